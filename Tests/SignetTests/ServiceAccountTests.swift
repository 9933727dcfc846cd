import Foundation
import Testing

/// Kubernetes service-account tokens as API credentials, minted by the API double as a cluster would, checked by
/// TokenReview and offline against the published JWKS.
@Suite(
    "Service-account tokens: TokenReview and JWKS, namespace policies, controllers acting for a namespace", .serialized)
struct ServiceAccountTests {
    func mint(
        _ cluster: KubernetesDoubleProcess, _ namespace: String, _ account: String, audiences: [String] = ["signet"],
        seconds: Int = 600,
        revoked: Bool = false
    ) throws -> String {
        try cluster.serviceAccountToken(
            namespace: namespace, account: account, audiences: audiences, seconds: seconds, revoked: revoked)
    }

    func issue(_ server: ServerProcess, token: String, name: String, onBehalfOf: String? = nil) throws -> (
        status: Int, body: [String: Any]
    ) {
        let csr = try Fixtures.csr()
        let body = String(
            decoding: try JSONSerialization.data(withJSONObject: ["csr": csr, "dnsNames": [name]]), as: UTF8.self)
        var arguments = [
            "-s", "--cacert", server.rootCertificate, "-w", "\n%{http_code}", "-H", "Authorization: Bearer \(token)",
            "-H", "Content-Type: application/json", "--data-binary", "@-",
        ]
        if let onBehalfOf { arguments += ["-H", "Signet-On-Behalf-Of: \(onBehalfOf)"] }
        let result = try Tool.run("curl", arguments + [server.url + "/v1/certificates"], input: body)
        let lines = result.output.split(separator: "\n")
        let json =
            (try? JSONSerialization.jsonObject(with: Data(lines.dropLast().joined(separator: "\n").utf8)))
            as? [String: Any] ?? [:]
        return (Int(lines.last ?? "") ?? 0, json)
    }

    func server(_ cluster: KubernetesDoubleProcess, validation: String) throws -> ServerProcess {
        let data = try Fixtures.temporaryDirectory("signet-sa")
        let config = data + "-signet.yaml"
        try """
        clusters:
          - name: home
            kubeconfig: \(cluster.kubeconfig("admin"))
        serviceAccounts:
          cluster: home
          audience: signet
          validation: \(validation)
          controllers: [signet-system/signet-controller]
          auditors: [monitoring/ledger-audit]
          namespaces:
            - namespace: team-a
              allow: ['*.team-a.example.com']
            - namespace: team-b
              allow: ['*.team-b.example.com']

        """.write(to: config)
        return try ServerProcess(dataDirectory: data, arguments: ["--config", config])
    }

    @Test(
        "each validation mode: the namespace's policy applies, bad tokens get 401, controllers may act for a namespace",
        arguments: ["tokenReview", "jwks"])
    func serviceAccounts(validation: String) throws {
        let cluster = try KubernetesDoubleProcess()
        defer { cluster.stop() }
        let server = try server(cluster, validation: validation)
        defer { server.stop() }

        let app = try mint(cluster, "team-a", "web")
        let issued = try issue(server, token: app, name: "web.team-a.example.com")
        #expect(issued.status == 201, "\(issued.body)")
        let serial = try #require(issued.body["serial"] as? String)
        let record = try Tool.run(
            "curl",
            [
                "-s", "--cacert", server.rootCertificate, "-H", "Authorization: Bearer \(app)",
                server.url + "/v1/certificates/\(serial)",
            ]
        ).output
        #expect(record.contains(#""requester":"serviceaccount:team-a:web""#), "\(record)")

        let outside = try issue(server, token: app, name: "web.team-b.example.com")
        #expect(outside.status == 403, "\(outside.body)")

        // team-b reads none of team-a's issuances; the auditing service account reads them all.
        func listed(_ token: String) throws -> [String] {
            let page = try Tool.run(
                "curl",
                [
                    "-s", "--cacert", server.rootCertificate, "-H", "Authorization: Bearer \(token)",
                    server.url + "/v1/certificates",
                ]
            ).output
            return
                ((try? JSONSerialization.jsonObject(with: Data(page.utf8)) as? [String: Any])?["items"]
                as? [[String: Any]] ?? []).compactMap { $0["serial"] as? String }
        }
        #expect(try listed(try mint(cluster, "team-b", "web")).isEmpty)
        #expect(try listed(app) == [serial])
        #expect(try listed(try mint(cluster, "monitoring", "ledger-audit")).contains(serial))

        let wrongAudience = try issue(
            server, token: try mint(cluster, "team-a", "web", audiences: ["vault"]), name: "web.team-a.example.com")
        #expect(
            wrongAudience.status == 401 && (wrongAudience.body["detail"] as? String ?? "").contains("not for Signet"),
            "\(wrongAudience.body)")
        let expired = try issue(
            server, token: try mint(cluster, "team-a", "web", seconds: -120), name: "web.team-a.example.com")
        #expect(expired.status == 401, "\(expired.body)")
        var forged = app
        forged.removeLast(4)
        forged += "AAAA"
        #expect(try issue(server, token: forged, name: "web.team-a.example.com").status == 401)

        // A namespace without a policy gets nothing.
        let stranger = try issue(server, token: try mint(cluster, "team-c", "web"), name: "web.team-a.example.com")
        #expect(
            stranger.status == 403
                && (stranger.body["detail"] as? String ?? "").contains("namespace 'team-c' has no policy"),
            "\(stranger.body)")

        // The controller asks on behalf of a namespace and gets exactly that namespace's names; others may not.
        let controller = try mint(cluster, "signet-system", "signet-controller")
        let forB = try issue(server, token: controller, name: "api.team-b.example.com", onBehalfOf: "team-b")
        #expect(forB.status == 201, "\(forB.body)")
        let crossed = try issue(server, token: controller, name: "api.team-a.example.com", onBehalfOf: "team-b")
        #expect(crossed.status == 403)
        let impostor = try issue(server, token: app, name: "api.team-b.example.com", onBehalfOf: "team-b")
        #expect(
            impostor.status == 403
                && (impostor.body["detail"] as? String ?? "").contains("not among serviceAccounts.controllers"),
            "\(impostor.body)")

        // A token whose pod is gone: TokenReview knows, offline validation cannot (the documented trade-off).
        let orphan = try issue(
            server, token: try mint(cluster, "team-a", "web", revoked: true), name: "web.team-a.example.com")
        #expect(orphan.status == (validation == "jwks" ? 201 : 401), "\(orphan.body)")
    }

    /// TokenReviews the double has answered.
    func reviews(_ cluster: KubernetesDoubleProcess) throws -> Int {
        let result = try Tool.run("curl", ["-sf", "--cacert", cluster.caFile, cluster.url + "/_admin/stats"])
        let stats = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
        return (stats?["requests"] as? [String: Int])?["POST apis/authentication.k8s.io/v1/tokenreviews"] ?? 0
    }

    @Test(
        "TokenReview is asked only for tokens that could pass, and answers are cached, refusals included; an answer without audiences is a refusal"
    )
    func tokenReviewIsGuarded() throws {
        let cluster = try KubernetesDoubleProcess()
        defer { cluster.stop() }
        let server = try server(cluster, validation: "tokenReview")
        defer { server.stop() }
        let before = try reviews(cluster)
        // Cheap refusals: the wrong audience, expired, not a JWT of a service account at all.
        let header = Data(#"{"alg":"RS256"}"#.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
        let claims = Data(#"{"sub":"alice","aud":["signet"],"exp":4102444800}"#.utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "")
        for token in [
            try mint(cluster, "team-a", "web", audiences: ["vault"]), try mint(cluster, "team-a", "web", seconds: -120),
            "\(header).\(claims).c2ln",
        ] {
            #expect(try issue(server, token: token, name: "web.team-a.example.com").status == 401)
        }
        #expect(try reviews(cluster) == before, "no TokenReview for tokens that cannot pass")

        // A valid token and an invalidated one: one review each, however often they are presented.
        let app = try mint(cluster, "team-a", "web")
        let orphan = try mint(cluster, "team-a", "web", revoked: true)
        for _ in 0..<5 {
            #expect(try issue(server, token: app, name: "web.team-a.example.com").status == 201)
            #expect(try issue(server, token: orphan, name: "web.team-a.example.com").status == 401)
        }
        #expect(try reviews(cluster) == before + 2)

        try cluster.admin("faults", ["tokenreview_without_audiences": true])
        let unconfirmed = try issue(server, token: try mint(cluster, "team-a", "api"), name: "api.team-a.example.com")
        #expect(
            unconfirmed.status == 401
                && (unconfirmed.body["detail"] as? String ?? "").contains("does not confirm the audience"),
            "\(unconfirmed.body)")

        // The API server down: the token may be good, so 503, saying what to do; the cluster's error only in the log.
        try cluster.admin("faults", ["tokenreview_without_audiences": false, "down": true])
        let unavailable = try issue(server, token: try mint(cluster, "team-a", "db"), name: "db.team-a.example.com")
        let detail = unavailable.body["detail"] as? String ?? ""
        #expect(
            unavailable.status == 503
                && unavailable.body["type"] as? String == "https://signet.dev/problems/authentication-unavailable",
            "\(unavailable.body)")
        #expect(
            !detail.contains("ServiceUnavailable") && !detail.contains("127.0.0.1")
                && !detail.contains(String(cluster.port)), "\(detail)")
        let requestID = try #require(unavailable.body["requestId"] as? String)
        #expect(
            server.logText.contains("requestId=\(requestID)") && server.logText.contains("ServiceUnavailable"),
            "\(server.logText.suffix(1500))")
    }
}
