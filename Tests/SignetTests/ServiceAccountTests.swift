import Foundation
import Testing

/// Kubernetes service-account tokens as API credentials, minted by the API double as a cluster would, checked by
/// TokenReview and offline against the published JWKS.
@Suite("Service-account tokens: TokenReview and JWKS, namespace policies, controllers acting for a namespace", .serialized)
struct ServiceAccountTests {
    func mint(_ cluster: KubernetesDoubleProcess, _ namespace: String, _ account: String, audiences: [String] = ["signet"], seconds: Int = 600,
              revoked: Bool = false) throws -> String {
        try cluster.serviceAccountToken(namespace: namespace, account: account, audiences: audiences, seconds: seconds, revoked: revoked)
    }

    func issue(_ server: ServerProcess, token: String, name: String, onBehalfOf: String? = nil) throws -> (status: Int, body: [String: Any]) {
        let csr = try Fixtures.csr()
        let body = String(decoding: try JSONSerialization.data(withJSONObject: ["csr": csr, "dnsNames": [name]]), as: UTF8.self)
        var arguments = ["-s", "--cacert", server.rootCertificate, "-w", "\n%{http_code}", "-H", "Authorization: Bearer \(token)",
                         "-H", "Content-Type: application/json", "--data-binary", "@-"]
        if let onBehalfOf { arguments += ["-H", "Signet-On-Behalf-Of: \(onBehalfOf)"] }
        let result = try Tool.run("curl", arguments + [server.url + "/v1/certificates"], input: body)
        let lines = result.output.split(separator: "\n")
        let json = (try? JSONSerialization.jsonObject(with: Data(lines.dropLast().joined(separator: "\n").utf8))) as? [String: Any] ?? [:]
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
              namespaces:
                - namespace: team-a
                  allow: ['*.team-a.example.com']
                - namespace: team-b
                  allow: ['*.team-b.example.com']

            """.write(to: config)
        return try ServerProcess(dataDirectory: data, arguments: ["--config", config])
    }

    @Test("each validation mode: the namespace's policy applies, bad tokens get 401, controllers may act for a namespace", arguments: ["tokenReview", "jwks"])
    func serviceAccounts(validation: String) throws {
        let cluster = try KubernetesDoubleProcess()
        defer { cluster.stop() }
        let server = try server(cluster, validation: validation)
        defer { server.stop() }

        let app = try mint(cluster, "team-a", "web")
        let issued = try issue(server, token: app, name: "web.team-a.example.com")
        #expect(issued.status == 201, "\(issued.body)")
        let serial = try #require(issued.body["serial"] as? String)
        let record = try Tool.run("curl", ["-s", "--cacert", server.rootCertificate, "-H", "Authorization: Bearer \(app)", server.url + "/v1/certificates/\(serial)"]).output
        #expect(record.contains(#""requester":"serviceaccount:team-a:web""#), "\(record)")

        let outside = try issue(server, token: app, name: "web.team-b.example.com")
        #expect(outside.status == 403, "\(outside.body)")

        let wrongAudience = try issue(server, token: try mint(cluster, "team-a", "web", audiences: ["vault"]), name: "web.team-a.example.com")
        #expect(wrongAudience.status == 401 && (wrongAudience.body["detail"] as? String ?? "").contains(validation == "jwks" ? "not for Signet" : "rejected"), "\(wrongAudience.body)")
        let expired = try issue(server, token: try mint(cluster, "team-a", "web", seconds: -120), name: "web.team-a.example.com")
        #expect(expired.status == 401, "\(expired.body)")
        var forged = app
        forged.removeLast(4)
        forged += "AAAA"
        #expect(try issue(server, token: forged, name: "web.team-a.example.com").status == 401)

        // A namespace without a policy gets nothing.
        let stranger = try issue(server, token: try mint(cluster, "team-c", "web"), name: "web.team-a.example.com")
        #expect(stranger.status == 403 && (stranger.body["detail"] as? String ?? "").contains("namespace 'team-c' has no policy"), "\(stranger.body)")

        // The controller asks on behalf of a namespace and gets exactly that namespace's names; others may not.
        let controller = try mint(cluster, "signet-system", "signet-controller")
        let forB = try issue(server, token: controller, name: "api.team-b.example.com", onBehalfOf: "team-b")
        #expect(forB.status == 201, "\(forB.body)")
        let crossed = try issue(server, token: controller, name: "api.team-a.example.com", onBehalfOf: "team-b")
        #expect(crossed.status == 403)
        let impostor = try issue(server, token: app, name: "api.team-b.example.com", onBehalfOf: "team-b")
        #expect(impostor.status == 403 && (impostor.body["detail"] as? String ?? "").contains("not among serviceAccounts.controllers"), "\(impostor.body)")

        // A token whose pod is gone: TokenReview knows, offline validation cannot (the documented trade-off).
        let orphan = try issue(server, token: try mint(cluster, "team-a", "web", revoked: true), name: "web.team-a.example.com")
        #expect(orphan.status == (validation == "jwks" ? 201 : 401), "\(orphan.body)")
    }
}
