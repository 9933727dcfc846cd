import Foundation
import Testing

/// Managed certificates end to end: `signet serve` with a cluster (the Kubernetes API double), the REST API, the
/// renewal scheduler, faults, a crash mid-renewal, and haproxy as the gateway fed from the Secret.
@Suite("Managed certificates: registered over REST, delivered into Secrets, renewed before expiry", .serialized)
struct ManagedDeliveryTests {
    /// A double, a server configured for it (cluster `double`), and a token allowed *.example.com into
    /// double/istio-system/*.
    final class Rig: @unchecked Sendable {
        let cluster: KubernetesDoubleProcess
        var server: ServerProcess
        let token: String
        let configPath: String

        init(gateway: String? = nil, extraConfiguration: String = "") throws {
            cluster = try KubernetesDoubleProcess()
            let data = try Fixtures.temporaryDirectory("signet-managed")
            configPath = data + "-signet.yaml"
            try """
            clusters:
              - name: double
                kubeconfig: \(cluster.kubeconfig("admin"))
            \(gateway.map { "    gateway: \($0)" } ?? "")
            \(extraConfiguration)
            """.write(to: configPath)
            server = try ServerProcess(dataDirectory: data, arguments: ["--config", configPath])
            token = try server.createToken(
                name: "platform", allow: ["*.example.com"],
                extra: ["--target", "double/istio-system/*", "--max-duration", "1d"])
        }

        /// Restarts the server on the same data directory (after a kill).
        func restart() throws {
            server = try ServerProcess(dataDirectory: server.dataDirectory, arguments: ["--config", configPath])
        }

        func api(_ method: String, _ path: String, _ body: [String: Any]? = nil, token: String? = nil) throws -> (
            status: Int, json: [String: Any]
        ) {
            var arguments = [
                "-s", "--max-time", "20", "--cacert", server.rootCertificate, "-X", method, "-w", "\n%{http_code}",
                "-H", "Authorization: Bearer \(token ?? self.token)",
            ]
            var input: String?
            if let body {
                arguments += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
                input = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
            }
            let result = try Tool.run("curl", arguments + [server.url + path], input: input)
            let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
            let status = Int(lines.last ?? "") ?? 0
            let text = lines.dropLast().joined(separator: "\n")
            let json = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
            return (status, json)
        }

        func register(_ name: String, _ fields: [String: Any]) throws -> (status: Int, json: [String: Any]) {
            try api(
                "POST", "/v1/managed-certificates",
                [
                    "name": name,
                    "target": ["cluster": "double", "namespace": "istio-system", "secretName": name + "-tls"],
                ]
                .merging(fields) { $1 })
        }

        func status(_ name: String) throws -> [String: Any] {
            try api("GET", "/v1/managed-certificates/\(name)").json["status"] as? [String: Any] ?? [:]
        }

        /// Polls the managed certificate's status until `condition` holds, for at most `seconds`.
        @discardableResult
        func waitForStatus(_ name: String, seconds: Double, _ condition: ([String: Any]) -> Bool) throws -> [String:
            Any]
        {
            let deadline = Date().addingTimeInterval(seconds)
            var last: [String: Any] = [:]
            while Date() < deadline {
                last = try status(name)
                if condition(last) { return last }
                Thread.sleep(forTimeInterval: 0.25)
            }
            throw Timeout(what: "status of \(name)", last: "\(last)\n" + server.logText.suffix(3000))
        }

        /// `waitForStatus` as another owner reads it.
        @discardableResult
        func waitFor(_ name: String, token: String, seconds: Double, _ condition: ([String: Any]) -> Bool) throws
            -> [String: Any]
        {
            let deadline = Date().addingTimeInterval(seconds)
            var last: [String: Any] = [:]
            while Date() < deadline {
                last =
                    try api("GET", "/v1/managed-certificates/\(name)", token: token).json["status"] as? [String: Any]
                    ?? [:]
                if condition(last) { return last }
                Thread.sleep(forTimeInterval: 0.25)
            }
            throw Timeout(what: "status of \(name)", last: "\(last)\n" + server.logText.suffix(3000))
        }

        /// Serials of the certificates the ledger holds for a managed certificate.
        func issuedSerials(_ name: String) throws -> [String] {
            let page = try api("GET", "/v1/certificates?requester=managed:\(name)").json
            return (page["items"] as? [[String: Any]] ?? []).compactMap { $0["serial"] as? String }
        }

        func stop() {
            server.stop()
            cluster.stop()
        }
    }

    struct Timeout: Error, CustomStringConvertible {
        let what: String
        let last: String
        var description: String { "timed out waiting for \(what); last seen: \(last)" }
    }

    /// Polls `condition` every 0.2 s for at most `seconds`; a timeout names what was awaited.
    static func poll(_ what: String, seconds: Double, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw Timeout(what: what, last: "not seen within \(Int(seconds)) s")
    }

    static func decoded(_ secret: [String: Any]?, _ key: String) -> String {
        guard let data = secret?["data"] as? [String: String], let value = data[key],
            let bytes = Data(base64Encoded: value)
        else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func annotations(_ secret: [String: Any]?) -> [String: String] {
        (secret?["metadata"] as? [String: Any])?["annotations"] as? [String: String] ?? [:]
    }

    @Test(
        "register → an Istio-ready Secret → status, metrics; refusals by policy; PATCH and renew issue anew; DELETE stops"
    )
    func lifecycle() throws {
        let rig = try Rig()
        defer { rig.stop() }

        // Refusals: each precise, none stored.
        let outside = try rig.register(
            "web",
            [
                "dnsNames": ["web.example.com"],
                "target": ["cluster": "double", "namespace": "default", "secretName": "web-tls"],
            ])
        #expect(
            outside.status == 403 && (outside.json["type"] as? String ?? "").hasSuffix("target-not-allowed"),
            "\(outside)")
        let names = try rig.register("web", ["dnsNames": ["web.other.org"]])
        #expect(names.status == 403 && (names.json["type"] as? String ?? "").hasSuffix("names-not-allowed"), "\(names)")
        let cluster = try rig.register(
            "web",
            [
                "dnsNames": ["web.example.com"],
                "target": ["cluster": "elsewhere", "namespace": "istio-system", "secretName": "web-tls"],
            ])
        #expect(
            cluster.status == 400
                && (cluster.json["detail"] as? String ?? "").contains("unknown cluster 'elsewhere'; configured: double"),
            "\(cluster)")
        let key = try rig.register(
            "web", ["dnsNames": ["web.example.com"], "privateKey": ["algorithm": "RSA", "size": 1024]])
        // api/openapi.yaml lists the offered sizes, so the request is refused as it is decoded, naming the field.
        #expect(
            key.status == 400 && (key.json["detail"] as? String ?? "").contains("privateKey.size")
                && (key.json["detail"] as? String ?? "").contains("1024"), "\(key)")
        let mismatched = try rig.register(
            "web", ["dnsNames": ["web.example.com"], "privateKey": ["algorithm": "ECDSA", "size": 2048]])
        #expect(
            mismatched.status == 400
                && (mismatched.json["detail"] as? String ?? "").contains("ECDSA size 2048 is not offered"),
            "a size the algorithm does not have: \(mismatched)")
        let unknown = try rig.register("web", ["dnsNames": ["web.example.com"], "colour": "blue"])
        #expect(unknown.status == 400 && (unknown.json["detail"] as? String ?? "").contains("colour"), "\(unknown)")
        let auditor = try rig.server.createToken(name: "auditor", allow: [], extra: ["--auditor"])
        #expect(
            try rig.api(
                "POST", "/v1/managed-certificates",
                [
                    "name": "x", "dnsNames": ["x.example.com"],
                    "target": ["cluster": "double", "namespace": "istio-system", "secretName": "x"],
                ], token: auditor
            ).status == 403)
        #expect(try rig.api("GET", "/v1/managed-certificates").json["items"] as? [Any] != nil)

        // The first certificate, delivered within seconds.
        let created = try rig.register(
            "web",
            [
                "dnsNames": ["web.example.com"], "duration": "1h",
                "secretTemplate": ["labels": ["team": "edge"], "annotations": ["example.com/owner": "platform"]],
            ])
        #expect(created.status == 201, "\(created)")
        #expect(try rig.register("web", ["dnsNames": ["web.example.com"]]).status == 409)
        let ready = try rig.waitForStatus("web", seconds: 20) { $0["ready"] as? Bool == true }
        let serial = try #require(ready["serial"] as? String)
        #expect(ready["reason"] as? String == "Issued" && ready["attempts"] as? Int == 0)

        let secret = try #require(try rig.cluster.secret("istio-system", "web-tls"))
        #expect(secret["type"] as? String == "kubernetes.io/tls")
        #expect(
            Self.annotations(secret)["signet.dev/serial"] == serial
                && Self.annotations(secret)["example.com/owner"] == "platform")
        let labels = (secret["metadata"] as? [String: Any])?["labels"] as? [String: String] ?? [:]
        #expect(labels["team"] == "edge" && labels["app.kubernetes.io/managed-by"] == "signet")
        let work = try Fixtures.temporaryDirectory("managed-web")
        try Self.decoded(secret, "tls.crt").write(to: work + "/tls.crt")
        try Self.decoded(secret, "ca.crt").write(to: work + "/ca.crt")
        let verified = try Tool.run(
            "openssl", ["verify", "-CAfile", work + "/ca.crt", "-untrusted", work + "/tls.crt", work + "/tls.crt"])
        #expect(verified.succeeded, "\(verified.output) \(verified.error)")
        #expect(try rig.issuedSerials("web") == [serial])

        let metrics = try rig.server.metrics()
        #expect(
            metrics.contains(
                #"signet_certificate_ready_status{name="web",cluster="double",namespace="istio-system",secret="web-tls",condition="True"} 1"#
            ), "\(metrics)")
        #expect(
            metrics.contains(
                #"signet_certificate_expiration_timestamp_seconds{name="web",cluster="double",namespace="istio-system",secret="web-tls"}"#
            ))

        // A changed spec is issued and delivered at once, with a new key.
        let patched = try rig.api(
            "PATCH", "/v1/managed-certificates/web", ["dnsNames": ["web.example.com", "api.example.com"]])
        #expect(patched.status == 200 && patched.json["generation"] as? Int == 2, "\(patched)")
        #expect(try rig.api("PATCH", "/v1/managed-certificates/web", ["dnsNames": ["web.other.org"]]).status == 403)
        let changed = try rig.waitForStatus("web", seconds: 20) {
            $0["observedGeneration"] as? Int == 2 && $0["ready"] as? Bool == true
        }
        let second = try #require(changed["serial"] as? String)
        #expect(second != serial)
        let renamed = try #require(try rig.cluster.secret("istio-system", "web-tls"))
        try Self.decoded(renamed, "tls.crt").write(to: work + "/tls2.crt")
        let text = try Tool.run("openssl", ["x509", "-in", work + "/tls2.crt", "-noout", "-ext", "subjectAltName"])
            .output
        #expect(text.contains("DNS:api.example.com") && text.contains("DNS:web.example.com"), "\(text)")
        #expect(Self.decoded(renamed, "tls.key") != Self.decoded(secret, "tls.key"))

        // Renew now, like cmctl renew.
        #expect(try rig.api("POST", "/v1/managed-certificates/web/renew").status == 202)
        let renewed = try rig.waitForStatus("web", seconds: 20) {
            ($0["serial"] as? String).map { $0 != second } ?? false
        }
        #expect(Set(try rig.issuedSerials("web")) == [serial, second, renewed["serial"] as? String ?? "?"])

        // Delete stops renewal; the Secret stays; the metrics forget it.
        #expect(try rig.api("DELETE", "/v1/managed-certificates/web").status == 204)
        #expect(try rig.api("GET", "/v1/managed-certificates/web").status == 404)
        #expect(try rig.cluster.secret("istio-system", "web-tls") != nil)
        // /metrics answers from a result at most limits.probeCacheSeconds (2 s) old.
        try Self.poll("the metrics forgetting a deleted managed certificate", seconds: 10) {
            !(try rig.server.metrics()).contains(#"name="web""#)
        }
    }

    @Test("a delivered Secret that is deleted or overwritten is delivered again, across closed and expired watches")
    func redelivery() throws {
        let rig = try Rig()
        defer { rig.stop() }
        #expect(try rig.register("watched", ["dnsNames": ["watched.example.com"], "duration": "1h"]).status == 201)
        var serial = try #require(
            try rig.waitForStatus("watched", seconds: 20) { $0["ready"] as? Bool == true }["serial"] as? String)
        // The watch on istio-system starts within its refresh period.
        func lists() throws -> Int {
            ((try rig.cluster.stats()["lists"] as? [String: Int]) ?? [:])["secrets/istio-system"] ?? 0
        }
        try Self.poll("Signet's watch of istio-system", seconds: 15) {
            let watches = try rig.cluster.stats()["watches"] as? Int ?? 0
            return try watches >= 1 && lists() >= 1
        }

        // Someone deletes the Secret: it is back within seconds, with a new certificate.
        #expect(try rig.cluster.kubectl(["delete", "secret", "watched-tls", "-n", "istio-system"]).succeeded)
        var status = try rig.waitForStatus("watched", seconds: 20) {
            ($0["serial"] as? String).map { $0 != serial } ?? false && $0["ready"] as? Bool == true
        }
        serial = try #require(status["serial"] as? String)
        #expect(Self.annotations(try rig.cluster.secret("istio-system", "watched-tls"))["signet.dev/serial"] == serial)

        // The history is compacted and the watch closed in one step. Signet relists either way the close reaches it:
        // a clean end of the stream makes it resume from its resourceVersion, answered 410; a connection cut mid-chunk
        // is a failed watch. Both end in a relist.
        let listedBefore = try lists()
        try rig.cluster.admin("compact", ["closeWatches": true])
        try Self.poll("a relist after the compaction", seconds: 60) { try lists() > listedBefore }

        // Someone overwrites what Signet delivered: it is replaced with a certificate Signet issued.
        #expect(
            try rig.cluster.kubectl([
                "annotate", "secret", "watched-tls", "-n", "istio-system", "signet.dev/serial=0bad", "--overwrite",
            ]).succeeded)
        status = try rig.waitForStatus("watched", seconds: 60) {
            ($0["serial"] as? String).map { $0 != serial } ?? false && $0["ready"] as? Bool == true
        }
        serial = try #require(status["serial"] as? String)
        #expect(Self.annotations(try rig.cluster.secret("istio-system", "watched-tls"))["signet.dev/serial"] == serial)
        #expect(
            try rig.issuedSerials("watched").count == 3,
            "one new certificate per disturbance, none for Signet's own writes")
        #expect(rig.server.logText.contains("a delivered Secret changed; delivering again"))
    }

    @Test("extra outputs: tls-combined.pem, key.der, and PKCS#12 keystores with the password from another Secret")
    func extraOutputs() throws {
        let rig = try Rig()
        defer { rig.stop() }
        #expect(
            try rig.register(
                "store",
                [
                    "dnsNames": ["store.example.com"], "duration": "1h",
                    "additionalOutputFormats": ["CombinedPEM", "DER"],
                    "keystores": ["pkcs12": ["passwordSecretRef": ["name": "store-password", "key": "password"]]],
                ]
            ).status == 201)
        // The password Secret does not exist yet: a clear, retried failure.
        let failing = try rig.waitForStatus("store", seconds: 20) { ($0["attempts"] as? Int ?? 0) >= 1 }
        #expect(
            (failing["lastError"] as? String ?? "").contains(
                "the PKCS#12 password Secret istio-system/store-password does not exist"), "\(failing)")
        #expect(
            try rig.cluster.kubectl([
                "create", "secret", "generic", "store-password", "-n", "istio-system",
                "--from-literal=password=changeit",
            ]).succeeded)
        let ready = try rig.waitForStatus("store", seconds: 30) { $0["ready"] as? Bool == true }
        #expect(ready["attempts"] as? Int == 0)

        let secret = try #require(try rig.cluster.secret("istio-system", "store-tls"))
        let data = secret["data"] as? [String: String] ?? [:]
        #expect(
            Set(data.keys) == [
                "tls.crt", "tls.key", "ca.crt", "tls-combined.pem", "key.der", "keystore.p12", "truststore.p12",
            ])
        #expect(
            Self.decoded(secret, "tls-combined.pem") == Self.decoded(secret, "tls.key")
                + Self.decoded(secret, "tls.crt"))
        let work = try Fixtures.temporaryDirectory("store")
        try Data(base64Encoded: data["keystore.p12"] ?? "")?.write(to: URL(fileURLWithPath: work + "/keystore.p12"))
        let read = try Tool.run(
            "openssl", ["pkcs12", "-in", work + "/keystore.p12", "-passin", "pass:changeit", "-nokeys"])
        #expect(
            read.succeeded && read.output.contains("subject=CN = store.example.com"), "\(read.output) \(read.error)")

        // Asked no more, the extra keys go; nothing stale is left behind.
        #expect(
            try rig.api("PATCH", "/v1/managed-certificates/store", ["additionalOutputFormats": [String]()]).status
                == 200)
        _ = try rig.waitForStatus("store", seconds: 20) {
            $0["observedGeneration"] as? Int == 2 && $0["ready"] as? Bool == true
        }
        let after = (try rig.cluster.secret("istio-system", "store-tls"))?["data"] as? [String: String] ?? [:]
        #expect(after["tls-combined.pem"] == nil && after["key.der"] == nil && after["keystore.p12"] != nil)
    }

    @Test(
        "a policy change reaches renewals: once its owner's token is revoked, a managed certificate is not renewed, and the status, an Event and a metric say why"
    )
    func revokedOwnerStopsRenewals() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let owner = try rig.server.createToken(
            name: "team-edge", allow: ["*.example.com"], extra: ["--target", "double/istio-system/*"])
        #expect(
            try rig.api(
                "POST", "/v1/managed-certificates",
                [
                    "name": "edge", "dnsNames": ["edge.example.com"], "duration": "1h",
                    "target": ["cluster": "double", "namespace": "istio-system", "secretName": "edge-tls"],
                ],
                token: owner
            ).status == 201)
        let delivered = try rig.waitForStatus("edge", seconds: 20) { $0["ready"] as? Bool == true }
        #expect(try rig.issuedSerials("edge") == [delivered["serial"] as? String ?? "?"])

        #expect(try rig.server.signet(["token", "revoke", "team-edge"]).succeeded)
        // Another caller allowed the certificate asks for a renewal now; the owner's revoked token decides.
        #expect(try rig.api("POST", "/v1/managed-certificates/edge/renew").status == 202)
        let refused = try rig.waitForStatus("edge", seconds: 20) { $0["reason"] as? String == "Unauthorized" }
        #expect((refused["lastError"] as? String ?? "").contains("token 'team-edge' has been revoked"), "\(refused)")
        #expect(refused["ready"] as? Bool == true, "the delivered certificate is still valid and in place")
        #expect(try rig.issuedSerials("edge").count == 1, "nothing issued")
        #expect(try rig.server.metrics().contains(#"signet_managed_renewals_total{outcome="unauthorized"} 1"#))
        let events = try rig.cluster.events("istio-system").filter { $0["reason"] as? String == "Unauthorized" }
        #expect(events.count == 1 && (events.first?["note"] as? String ?? "").contains("edge"), "\(events)")
        // Retried on the normal backoff, still refused, still nothing issued.
        let again = try rig.waitForStatus("edge", seconds: 20) { ($0["attempts"] as? Int ?? 0) >= 2 }
        #expect(again["reason"] as? String == "Unauthorized")
        #expect(try rig.issuedSerials("edge").count == 1)
    }

    @Test(
        "revoking a managed certificate's current certificate renews it at once with a new key, and an Event says why")
    func revokedCertificateIsReplaced() throws {
        let rig = try Rig()
        defer { rig.stop() }
        #expect(try rig.register("gone", ["dnsNames": ["gone.example.com"], "duration": "24h"]).status == 201)
        let first = try rig.waitForStatus("gone", seconds: 20) { $0["ready"] as? Bool == true }
        let serial = try #require(first["serial"] as? String)
        let keyBefore = Self.decoded(try #require(try rig.cluster.secret("istio-system", "gone-tls")), "tls.key")

        let revoked = try rig.server.signet([
            "certs", "revoke", serial, "--reason", "keyCompromise", "--server", rig.server.url,
            "--cacert", rig.server.rootCertificate, "--token", rig.token,
        ])
        #expect(revoked.succeeded && revoked.output.contains("revoked \(serial)"), "\(revoked.output)\(revoked.error)")
        let renewed = try rig.waitForStatus("gone", seconds: 20) {
            $0["serial"] as? String != serial && $0["ready"] as? Bool == true
        }
        let replacement = try #require(renewed["serial"] as? String)
        #expect(try rig.issuedSerials("gone").count == 2)
        let secret = try #require(try rig.cluster.secret("istio-system", "gone-tls"))
        #expect(Self.decoded(secret, "tls.key") != keyBefore, "a new key")
        #expect(try rig.api("GET", "/v1/certificates/\(serial)").json["status"] as? String == "revoked")
        #expect(try rig.api("GET", "/v1/certificates/\(replacement)").json["status"] as? String == "valid")
        let events = try rig.cluster.events("istio-system").filter { $0["reason"] as? String == "Revoked" }
        #expect(events.count == 1 && (events.first?["note"] as? String ?? "").contains(serial), "\(events)")
    }

    @Test(
        "ca.crl: a client certificate's Secret carries the chain's CRLs, with which openssl verifies it; a revocation reaches the Secret within seconds"
    )
    func caCRL() throws {
        let rootCRL = try Fixtures.temporaryDirectory("root-crl") + "/root.crl"
        let rig = try Rig(extraConfiguration: "crl:\n  rootCRL: \(rootCRL)\n")
        defer { rig.stop() }
        let ca = rig.server.caDirectory
        let made = try rig.server.signet([
            "ca", "crl", "--root-cert", ca + "/root.crt", "--root-key", ca + "/root.key", "--out", rootCRL,
        ])
        #expect(made.succeeded, "\(made.error)")
        let owner = try rig.server.createToken(
            name: "mtls-owner", allow: ["*.example.com"],
            extra: ["--target", "double/istio-system/*", "--profiles", "server,client"])
        let registered = try rig.api(
            "POST", "/v1/managed-certificates",
            [
                "name": "mtls", "dnsNames": ["mtls.example.com"], "profile": "client", "duration": "24h",
                "target": ["cluster": "double", "namespace": "istio-system", "secretName": "mtls-tls"],
            ], token: owner)
        #expect(registered.status == 201, "\(registered.json)")
        let first = try rig.waitFor("mtls", token: owner, seconds: 20) { $0["ready"] as? Bool == true }
        let serial = try #require(first["serial"] as? String)
        let work = try Fixtures.temporaryDirectory("ca-crl")
        func secretFiles(_ suffix: String) throws -> String {
            let secret = try #require(try rig.cluster.secret("istio-system", "mtls-tls"))
            try Self.decoded(secret, "tls.crt").write(to: work + "/tls\(suffix).crt")
            try Self.decoded(secret, "ca.crl").write(to: work + "/ca\(suffix).crl")
            return Self.decoded(secret, "ca.crl")
        }
        let crls = try secretFiles("1")
        #expect(
            crls.components(separatedBy: "BEGIN X509 CRL").count - 1 == 2, "the intermediate's and the root's: \(crls)")
        func verify(_ leaf: String, _ crl: String) throws -> Tool.Result {
            try Tool.run(
                "openssl",
                [
                    "verify", "-crl_check_all", "-CAfile", rig.server.rootCertificate, "-untrusted",
                    rig.server.intermediateCertificate,
                    "-CRLfile", crl, leaf,
                ])
        }
        let good = try verify(work + "/tls1.crt", work + "/ca1.crl")
        #expect(good.succeeded, "\(good.output)\(good.error)")

        #expect(
            try rig.api("POST", "/v1/certificates/\(serial)/revoke", ["reason": "keyCompromise"], token: owner).status
                == 200)
        let deadline = Date().addingTimeInterval(20)
        var listed = false
        while !listed, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.5)
            _ = try secretFiles("2")
            listed = try Tool.run("openssl", ["crl", "-in", work + "/ca2.crl", "-noout", "-text"]).output.uppercased()
                .contains(serial.uppercased())
        }
        #expect(listed, "the Secret's ca.crl lists the revoked serial")
        let refused = try verify(work + "/tls1.crt", work + "/ca2.crl")
        #expect(
            !refused.succeeded && (refused.output + refused.error).contains("certificate revoked"),
            "\(refused.output)\(refused.error)")
        let renewed = try rig.waitFor("mtls", token: owner, seconds: 20) {
            $0["serial"] as? String != serial && $0["ready"] as? Bool == true
        }
        _ = try secretFiles("3")
        let replacement = try verify(work + "/tls3.crt", work + "/ca3.crl")
        #expect(
            replacement.succeeded,
            "the replacement \(renewed["serial"] ?? "?") verifies with the current ca.crl: \(replacement.output)\(replacement.error)"
        )
        let server = try rig.register("plain", ["dnsNames": ["plain.example.com"], "duration": "24h"])
        #expect(
            server.status == 201 && (server.json["caCRL"] as? Bool) == false,
            "server certificates carry no ca.crl unless asked")
    }

    @Test(
        "private keys at rest: after a renewal that failed mid-way, the ledger's database, WAL and SHM files hold none of the pending key's bytes; all are 0600"
    )
    func pendingKeyNeverRestsInPlaintext() throws {
        let rig = try Rig()
        defer { rig.stop() }
        // The API server down: the renewal stores its pending key, then fails before the Secret can be written.
        try rig.cluster.admin("faults", ["down": true])
        #expect(try rig.register("sealed", ["dnsNames": ["sealed.example.com"], "duration": "1h"]).status == 201)
        try rig.waitForStatus("sealed", seconds: 30) { ($0["attempts"] as? Int ?? 0) >= 1 }
        let database = rig.server.dataDirectory + "/ledger.sqlite"
        let snapshot = try Fixtures.temporaryDirectory("ledger-snapshot")
        var copies: [String] = []
        for suffix in ["", "-wal", "-shm"] {
            let mode = try FileManager.default.attributesOfItem(atPath: database + suffix)[.posixPermissions] as? Int
            #expect(mode == 0o600, "ledger.sqlite\(suffix): \(String(mode ?? 0, radix: 8))")
            try FileManager.default.copyItem(atPath: database + suffix, toPath: snapshot + "/ledger.sqlite" + suffix)
            copies.append(snapshot + "/ledger.sqlite" + suffix)
        }

        // Back up: the same pending key is delivered; it is the key the copies must not contain.
        try rig.cluster.admin("faults", ["down": false])
        try rig.waitForStatus("sealed", seconds: 40) { $0["ready"] as? Bool == true }
        let pem = Self.decoded(try rig.cluster.secret("istio-system", "sealed-tls"), "tls.key")
        let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let der = try #require(Data(base64Encoded: body))
        // The private scalar of a P-256 PKCS#8 key: the 32 octets after the ECPrivateKey's version and OCTET STRING header.
        let marker = Data([0x02, 0x01, 0x01, 0x04, 0x20])
        let scalar = try #require(der.range(of: marker).map { der[$0.upperBound..<$0.upperBound + 32] })
        for file in copies + [database, database + "-wal"] {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
            #expect(bytes.range(of: Data(scalar)) == nil, "\(file) holds the private scalar")
            #expect(
                bytes.range(of: Data(body.prefix(48).utf8)) == nil
                    && bytes.range(of: Data(body.suffix(48).utf8)) == nil, "\(file) holds the PEM")
        }

        // A data directory others may read is named at start.
        rig.server.stop()
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: rig.server.dataDirectory)
        try rig.restart()
        #expect(
            rig.server.logText.contains("readable by others than Signet's user")
                && rig.server.logText.contains("mode=755"), "\(rig.server.logText.suffix(2000))")
    }

    @Test(
        "forced renewals of one managed certificate are limited per hour (429 with Retry-After); its scheduled renewals are not"
    )
    func forcedRenewalLimit() throws {
        let rig = try Rig(extraConfiguration: "limits:\n  forcedRenewalsPerHour: 2\n")
        defer { rig.stop() }
        #expect(try rig.register("busy", ["dnsNames": ["busy.example.com"], "duration": "1h"]).status == 201)
        try rig.waitForStatus("busy", seconds: 20) { $0["ready"] as? Bool == true }
        #expect(try rig.api("POST", "/v1/managed-certificates/busy/renew").status == 202)
        #expect(try rig.api("POST", "/v1/managed-certificates/busy/renew").status == 202)
        let limited = try rig.api("POST", "/v1/managed-certificates/busy/renew")
        #expect(
            limited.status == 429 && limited.json["type"] as? String == "https://signet.dev/problems/rate-limited",
            "\(limited.json)")
        #expect(try rig.server.metrics().contains(#"signet_rate_limited_total{limit="renewal"} 1"#))

        // Reading it: another tenant finds nothing; an auditor finds it.
        let stranger = try rig.server.createToken(
            name: "stranger", allow: ["*.other.example"], extra: ["--target", "double/other/*"])
        #expect(try rig.api("GET", "/v1/managed-certificates/busy", token: stranger).status == 404)
        #expect(
            (try rig.api("GET", "/v1/managed-certificates", token: stranger).json["items"] as? [Any])?.isEmpty == true)
        #expect(try rig.api("GET", "/v1/certificates?requester=managed:busy", token: stranger).status == 403)
        let auditor = try rig.server.createToken(name: "auditor", allow: [], extra: ["--auditor"])
        #expect(try rig.api("GET", "/v1/managed-certificates/busy", token: auditor).status == 200)
        #expect(
            (try rig.api("GET", "/v1/certificates?requester=managed:busy", token: auditor).json["items"] as? [Any])?
                .isEmpty == false)
    }

    @Test(
        "a short-lived certificate is renewed before expiry with a new key; API-server faults delay it, never duplicate it"
    )
    func renewalUnderFaults() throws {
        let rig = try Rig()
        defer { rig.stop() }
        // Four minutes of life, renewed 200 s before expiry: due 20-40 s after issuance (jitter brings it forward). A
        // renewal that a fault interrupts resumes with the certificate it signed while that one is not yet due itself
        // (40 s): room for a hung write (10 s), its backoff and a loaded machine.
        #expect(
            try rig.register("short", ["dnsNames": ["short.example.com"], "duration": "4m", "renewBefore": "200s"])
                .status == 201)
        let first = try rig.waitForStatus("short", seconds: 20) { $0["ready"] as? Bool == true }
        let firstSerial = try #require(first["serial"] as? String)
        let firstKey = Self.decoded(try rig.cluster.secret("istio-system", "short-tls"), "tls.key")

        // Conflicts, 500s and a write that never answers (the client times out after 10 s): the renewal still lands, once.
        try rig.cluster.admin("faults", ["conflict_every": 2, "error_every": 3, "hang_every": 5])
        let second = try rig.waitForStatus("short", seconds: 90) {
            ($0["serial"] as? String).map { $0 != firstSerial } ?? false
        }
        let secondSerial = try #require(second["serial"] as? String)
        let notAfter = ISO8601DateFormatter().date(from: first["notAfter"] as? String ?? "") ?? .distantPast
        #expect(Date() < notAfter, "renewed before the first certificate expired")
        #expect(Self.decoded(try rig.cluster.secret("istio-system", "short-tls"), "tls.key") != firstKey)
        #expect(Set(try rig.issuedSerials("short")) == [firstSerial, secondSerial])
        let faulted = try rig.cluster.stats()
        #expect(
            (faulted["conflicts_injected"] as? Int ?? 0) >= 1 && (faulted["errors_injected"] as? Int ?? 0) >= 1
                && (faulted["hangs_injected"] as? Int ?? 0) >= 1, "the faults happened: \(faulted)")
        #expect(
            ((faulted["writes"] as? [String: Int]) ?? [:])["secrets/istio-system/short-tls"] == 2,
            "written once per certificate: \(faulted)")

        // The API server down: the attempt fails, is counted and explained; the valid certificate stays ready.
        try rig.cluster.admin("faults", ["conflict_every": 0, "error_every": 0, "hang_every": 0, "down": true])
        #expect(try rig.api("POST", "/v1/managed-certificates/short/renew").status == 202)
        let failing = try rig.waitForStatus("short", seconds: 40) { ($0["attempts"] as? Int ?? 0) >= 1 }
        #expect(failing["reason"] as? String == "Failing" && failing["ready"] as? Bool == true, "\(failing)")
        #expect((failing["lastError"] as? String ?? "").contains("503"), "\(failing)")
        #expect(
            try rig.server.metrics().contains(
                #"signet_certificate_failed_attempts{name="short",cluster="double",namespace="istio-system",secret="short-tls"} "#
            ))

        // Back up: the retry (seconds, not hours) delivers one new certificate (nothing was signed while the Secret
        // could not even be read).
        try rig.cluster.admin("faults", ["down": false])
        let recovered = try rig.waitForStatus("short", seconds: 40) {
            ($0["serial"] as? String).map { $0 != secondSerial } ?? false && $0["attempts"] as? Int == 0
        }
        let issued = try rig.issuedSerials("short")
        #expect(
            issued.count == 3 && issued.contains(recovered["serial"] as? String ?? "?"),
            "one renewal, one certificate: \(issued)")
    }

    @Test(
        "killed mid-renewal (signed, not yet delivered) and restarted: the same certificate is delivered, none is issued twice"
    )
    func killedMidRenewal() throws {
        let rig = try Rig()
        defer { rig.stop() }
        #expect(try rig.register("crash", ["dnsNames": ["crash.example.com"], "duration": "1h"]).status == 201)
        let first = try #require(
            try rig.waitForStatus("crash", seconds: 20) { $0["ready"] as? Bool == true }["serial"] as? String)

        // A renewal of the delivered certificate, with every API call taking 8 s: it is stuck writing the Secret
        // after its new certificate is signed, and Signet is killed there.
        try rig.cluster.admin("faults", ["latency_ms": 8000])
        #expect(try rig.api("POST", "/v1/managed-certificates/crash/renew").status == 202)
        var signed: [String] = []
        try Self.poll("the renewal's certificate", seconds: 30) {
            signed = try rig.issuedSerials("crash")
            return signed.count == 2
        }
        let second = try #require(signed.first { $0 != first })
        rig.server.kill(signal: SIGKILL)
        rig.server.process.waitUntilExit()
        try rig.cluster.admin("faults", ["latency_ms": 0])
        #expect(
            Self.annotations(try rig.cluster.secret("istio-system", "crash-tls"))["signet.dev/serial"] == first,
            "the crash came before the Secret was written")

        try rig.restart()
        let ready = try rig.waitForStatus("crash", seconds: 30) {
            $0["serial"] as? String == second && $0["ready"] as? Bool == true
        }
        #expect(ready["attempts"] as? Int == 0)
        #expect(Set(try rig.issuedSerials("crash")) == [first, second], "no third certificate")
        #expect(Self.annotations(try rig.cluster.secret("istio-system", "crash-tls"))["signet.dev/serial"] == second)
        #expect(rig.server.logText.contains("resuming an interrupted renewal"))
    }

    @Test(
        "haproxy fed from the Secret serves the renewed certificate to curl --resolve; a connection opened before stays up; the probe sees the new serial"
    )
    func gatewayEndToEnd() throws {
        let haproxyPort = try freePort()
        let rig = try Rig(gateway: "127.0.0.1:\(haproxyPort)")
        defer { rig.stop() }
        let work = try Fixtures.temporaryDirectory("gateway")
        #expect(
            try rig.register("edge", ["dnsNames": ["edge.example.com"], "duration": "2m", "renewBefore": "100s"]).status
                == 201)
        let first = try rig.waitForStatus("edge", seconds: 20) { $0["ready"] as? Bool == true }
        let firstSerial = try #require(first["serial"] as? String)

        // The gateway starts from the Secret as it is, then follows it (as Istio's SDS would).
        let secret = try #require(try rig.cluster.secret("istio-system", "edge-tls"))
        try (Self.decoded(secret, "tls.crt") + Self.decoded(secret, "tls.key")).write(to: work + "/edge.pem")
        try Self.decoded(secret, "ca.crt").write(to: work + "/ca.crt")
        let haproxy = try HAProxyGateway.start(
            work: work,
            frontend: """
                    bind 127.0.0.1:\(haproxyPort) ssl crt \(work)/edge.pem
                    http-request return status 200 content-type text/plain string "ok"
                """)
        defer {
            haproxy.terminate()
            haproxy.waitUntilExit()
        }
        let sync = try HAProxyGateway.follow(
            rig.cluster, namespace: "istio-system", secret: "edge-tls", work: work, certFile: work + "/edge.pem")
        let syncLog = work + "/sync.log"
        defer {
            kill(sync.processIdentifier, SIGKILL)
            sync.waitUntilExit()
        }

        func servedSerial() throws -> String? {
            let answer = try Tool.run(
                "curl",
                [
                    "-s", "--max-time", "5", "--resolve", "edge.example.com:\(haproxyPort):127.0.0.1", "--cacert",
                    work + "/ca.crt",
                    "-w", "%{certs}", "-o", "/dev/null", "https://edge.example.com:\(haproxyPort)/",
                ])
            guard answer.succeeded else { return nil }
            try answer.output.write(to: work + "/served.pem")
            let serial = try Tool.run("openssl", ["x509", "-in", work + "/served.pem", "-noout", "-serial"]).output
            return serial.split(separator: "=").last.map { Self.normalized(String($0)) }
        }
        var deadline = Date().addingTimeInterval(10)
        while try servedSerial() != Self.normalized(firstSerial), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(try servedSerial() == Self.normalized(firstSerial))

        // A client connects before the renewal and keeps its connection.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: try Tool.which("python3"))
        holder.arguments = [
            Fixtures.packageRoot + "/Tests/Gateway/hold_connection.py", "--host", "127.0.0.1", "--port",
            "\(haproxyPort)",
            "--name", "edge.example.com", "--cafile", work + "/ca.crt",
        ]
        let holderIn = Pipe(), holderOut = Pipe()
        holder.standardInput = holderIn
        holder.standardOutput = holderOut
        try holder.run()
        defer {
            kill(holder.processIdentifier, SIGKILL)
            holder.waitUntilExit()
        }
        let lines = LineReader(holderOut.fileHandleForReading)
        #expect(lines.next() == "status 200 serial \(Self.normalized(firstSerial))")

        // The renewal: a new serial in the Secret, pushed into haproxy, served to new handshakes.
        let renewed = try rig.waitForStatus("edge", seconds: 40) {
            ($0["serial"] as? String).map { $0 != firstSerial } ?? false
        }
        let secondSerial = Self.normalized(try #require(renewed["serial"] as? String))
        deadline = Date().addingTimeInterval(15)
        while try servedSerial() != secondSerial, Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
        #expect(
            try servedSerial() == secondSerial,
            "sync log: \((try? String(contentsOfFile: syncLog, encoding: .utf8)) ?? "")")

        // The connection from before is still up, still on the certificate it shook hands with.
        holderIn.fileHandleForWriting.write(Data("again\n".utf8))
        #expect(lines.next() == "status 200 serial \(Self.normalized(firstSerial))")

        // Signet's own probe saw the gateway serve the new serial.
        let probed = try rig.waitForStatus("edge", seconds: 30) {
            (($0["probe"] as? [String: Any])?["matches"] as? Bool) == true
        }
        let probe = try #require(probed["probe"] as? [String: Any])
        #expect(Self.normalized(probe["servedSerial"] as? String ?? "") == secondSerial)
        #expect(try rig.server.metrics().contains(#"signet_delivery_probes_total{outcome="served"}"#))
    }

    /// Serials compared as numbers: openssl and Python print them with or without leading zeros, in either case.
    static func normalized(_ serial: String) -> String {
        let lower = serial.lowercased().trimmingCharacters(in: .whitespacesAndNewlines)
        let trimmed = lower.drop { $0 == "0" }
        return trimmed.isEmpty ? "0" : String(trimmed)
    }
}

/// Lines from a pipe, one at a time, waiting at most ten seconds for each.
final class LineReader: @unchecked Sendable {
    // @unchecked: used from the one test that owns it.
    private let handle: FileHandle
    private var buffer = Data()

    init(_ handle: FileHandle) { self.handle = handle }

    func next() -> String? {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                return line
            }
            let chunk = handle.availableData
            if chunk.isEmpty { return nil }
            buffer.append(chunk)
        }
        return nil
    }
}
