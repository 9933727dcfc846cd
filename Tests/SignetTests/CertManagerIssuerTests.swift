import Foundation
import SignetAuthority
import SignetController
import SignetKubernetes
import Testing

/// `signet controller --cert-manager` and `--csr-signer` against the Kubernetes API double (with cert-manager's
/// CertificateRequest CRD) and a real Signet: requests made with kubectl exactly as cert-manager and Kubernetes
/// clients make them, approval and denial, policy refusals, issuers that may not be used, faults, two replicas.
@Suite("signet controller as cert-manager's external issuer and a Kubernetes CSR signer", .serialized)
struct CertManagerIssuerTests {
    typealias Rig = ControllerTests.Rig

    /// A P-256 CSR made by openssl for `uri`/`dns` names, base64 of its PEM as in `spec.request`.
    static func request(dns: [String], work: String, name: String) throws -> String {
        let names = dns.map { "DNS:\($0)" }.joined(separator: ",")
        let made = try Tool.run(
            "openssl",
            [
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                work + "/\(name).key",
                "-subj", "/", "-addext", "subjectAltName=\(names)", "-out", work + "/\(name).csr",
            ])
        guard made.succeeded else { throw Tool.ToolMissing(name: "openssl req (\(made.error))") }
        return Data(try String(contentsOfFile: work + "/\(name).csr", encoding: .utf8).utf8).base64EncodedString()
    }

    /// A CertificateRequest as cert-manager's certificates controller creates it.
    static func certificateRequest(
        _ name: String, namespace: String = "team-a", request: String, issuer: String = "signet",
        kind: String = "SignetClusterIssuer",
        usages: [String] = ["digital signature", "key encipherment", "server auth"], duration: String = "2160h0m0s",
        extra: String = ""
    ) -> String {
        """
        apiVersion: cert-manager.io/v1
        kind: CertificateRequest
        metadata:
          name: \(name)
          namespace: \(namespace)
          annotations:
            cert-manager.io/certificate-name: \(name.split(separator: "-").first.map(String.init) ?? name)
            cert-manager.io/certificate-revision: "1"
            cert-manager.io/private-key-secret-name: \(name)-abcde
        spec:
          request: \(request)
          issuerRef: {group: signet.dev, kind: \(kind), name: \(issuer)}
          duration: \(duration)
          usages: [\(usages.joined(separator: ", "))]
          username: system:serviceaccount:cert-manager:cert-manager
          groups: [system:serviceaccounts, system:serviceaccounts:cert-manager, system:authenticated]
        \(extra)
        """
    }

    static func approve(_ rig: Rig, _ name: String, namespace: String = "team-a", type: String = "Approved") throws {
        let reason = type == "Approved" ? "cert-manager.io" : "policy.cert-manager.io"
        let patch =
            #"{"status":{"conditions":[{"type":"\#(type)","status":"True","reason":"\#(reason)","message":"Certificate request has been \#(type.lowercased()) by cert-manager.io","lastTransitionTime":"2026-12-01T00:00:00Z"}]}}"#
        let patched = try rig.cluster.kubectl([
            "patch", "certificaterequest", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch,
        ])
        guard patched.succeeded else {
            throw Tool.ToolMissing(name: "kubectl patch --subresource=status (\(patched.error))")
        }
    }

    static func object(_ rig: Rig, _ kind: String, _ name: String, namespace: String? = "team-a") throws -> [String:
        Any]
    {
        let result = try rig.cluster.kubectl(["get", kind, name, "-o", "json"] + (namespace.map { ["-n", $0] } ?? []))
        return (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Any] ?? [:]
    }

    static func condition(_ object: [String: Any], _ type: String) -> [String: Any]? {
        ((object["status"] as? [String: Any])?["conditions"] as? [[String: Any]])?.first {
            $0["type"] as? String == type
        }
    }

    @discardableResult
    static func wait(
        _ rig: Rig, _ kind: String, _ name: String, namespace: String? = "team-a", seconds: Double = 30,
        _ check: ([String: Any]) -> Bool
    ) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(seconds)
        var last: [String: Any] = [:]
        while Date() < deadline {
            last = try object(rig, kind, name, namespace: namespace)
            if check(last) { return last }
            Thread.sleep(forTimeInterval: 0.3)
        }
        throw ManagedDeliveryTests.Timeout(
            what: "\(kind) \(name)", last: "\(last["status"] ?? "no status")\n" + rig.controllerLog("one").suffix(3000))
    }

    static func issuers(_ rig: Rig, clusterIssuerNamespaces: String = "[team-a]") throws {
        let root = Data(try String(contentsOfFile: rig.server.rootCertificate, encoding: .utf8).utf8)
            .base64EncodedString()
        try rig.apply(
            """
            apiVersion: signet.dev/v1alpha1
            kind: SignetClusterIssuer
            metadata: {name: signet}
            spec:
              url: \(rig.server.url)
              caBundle: \(root)
              auth: {serviceAccountToken: {audience: signet}}
              namespaces: \(clusterIssuerNamespaces)
            ---
            apiVersion: signet.dev/v1alpha1
            kind: SignetIssuer
            metadata: {name: local, namespace: team-a}
            spec:
              url: \(rig.server.url)/
            ---
            apiVersion: signet.dev/v1alpha1
            kind: SignetIssuer
            metadata: {name: elsewhere, namespace: team-a}
            spec:
              url: https://collector.attacker.example:8443
            """)
        try wait(rig, "signetclusterissuer", "signet", namespace: nil) {
            condition($0, "Ready")?["status"] as? String == "True"
        }
    }

    static func decoded(_ object: [String: Any], _ field: String) -> String {
        ((object["status"] as? [String: Any])?[field] as? String).flatMap { Data(base64Encoded: $0) }.map {
            String(decoding: $0, as: UTF8.self)
        } ?? ""
    }

    @Test(
        "CertificateRequests: nothing before approval; approved ones signed under the namespace's policy (usages to profiles, duration kept), status.certificate and status.ca verify; denied, outside policy, isCA and code signing end Failed or Denied, once; issuers Ready only when Signet vouches for the controller, and never for another server"
    )
    func certificateRequests() throws {
        let rig = try Rig()
        defer { rig.stop() }
        _ = try rig.startController("one", extra: ["--cert-manager"])
        try Self.issuers(rig)
        let cluster = try Self.object(rig, "signetclusterissuer", "signet", namespace: nil)
        #expect((Self.condition(cluster, "Ready")?["message"] as? String ?? "").contains("for team-a"), "\(cluster)")
        try Self.wait(rig, "signetissuer", "local") { Self.condition($0, "Ready")?["status"] as? String == "True" }
        let elsewhere = try Self.wait(rig, "signetissuer", "elsewhere") {
            Self.condition($0, "Ready")?["reason"] as? String == "ServerNotAllowed"
        }
        #expect(Self.condition(elsewhere, "Ready")?["status"] as? String == "False")

        let web = try Self.request(dns: ["web.team-a.example.com"], work: rig.work, name: "web")
        try rig.apply(Self.certificateRequest("web-1", request: web))
        Thread.sleep(forTimeInterval: 3)
        #expect(
            Self.decoded(try Self.object(rig, "certificaterequest", "web-1"), "certificate").isEmpty,
            "nothing before approval")
        #expect(try rig.issuedSerials().isEmpty)

        try Self.approve(rig, "web-1")
        let issued = try Self.wait(rig, "certificaterequest", "web-1") {
            Self.condition($0, "Ready")?["status"] as? String == "True"
        }
        #expect(Self.condition(issued, "Ready")?["reason"] as? String == "Issued")
        try Self.decoded(issued, "certificate").write(to: rig.work + "/web-chain.pem")
        try Self.decoded(issued, "ca").write(to: rig.work + "/web-ca.pem")
        #expect(
            Self.decoded(issued, "certificate").components(separatedBy: "BEGIN CERTIFICATE").count - 1 == 2,
            "leaf and intermediate")
        let verified = try Tool.run(
            "openssl",
            [
                "verify", "-CAfile", rig.work + "/web-ca.pem", "-untrusted", rig.work + "/web-chain.pem",
                rig.work + "/web-chain.pem",
            ])
        #expect(verified.succeeded, "\(verified.output)\(verified.error)")
        let text = try Tool.run("openssl", ["x509", "-in", rig.work + "/web-chain.pem", "-noout", "-text"]).output
        #expect(
            text.contains("DNS:web.team-a.example.com") && text.contains("TLS Web Server Authentication")
                && !text.contains("Client Authentication"))
        let dates = try Tool.run(
            "openssl", ["x509", "-in", rig.work + "/web-chain.pem", "-noout", "-startdate", "-enddate"]
        ).output
        #expect(dates.contains("notAfter="), "\(dates)")

        // A client certificate for an hour, through the namespace's own SignetIssuer.
        let client = try Self.request(dns: ["robot.team-a.example.com"], work: rig.work, name: "robot")
        try rig.apply(
            Self.certificateRequest(
                "robot-1", request: client, issuer: "local", kind: "SignetIssuer",
                usages: ["digital signature", "client auth"], duration: "1h0m0s"))
        try Self.approve(rig, "robot-1")
        let robot = try Self.wait(rig, "certificaterequest", "robot-1") {
            Self.condition($0, "Ready")?["status"] as? String == "True"
        }
        try Self.decoded(robot, "certificate").write(to: rig.work + "/robot.pem")
        let robotText = try Tool.run("openssl", ["x509", "-in", rig.work + "/robot.pem", "-noout", "-text"]).output
        #expect(robotText.contains("TLS Web Client Authentication") && !robotText.contains("Server Authentication"))
        let seconds = try Tool.run("openssl", ["x509", "-in", rig.work + "/robot.pem", "-noout", "-checkend", "3500"])
        let longer = try Tool.run("openssl", ["x509", "-in", rig.work + "/robot.pem", "-noout", "-checkend", "3700"])
        #expect(seconds.succeeded && !longer.succeeded, "valid for the hour asked")

        // Denied, outside the namespace's policy, a CA, code signing, a namespace the cluster issuer does not serve,
        // and an issuer that may not be used: none signed; the final ones are never retried.
        let denied = try Self.request(dns: ["denied.team-a.example.com"], work: rig.work, name: "denied")
        try rig.apply(Self.certificateRequest("denied-1", request: denied))
        try Self.approve(rig, "denied-1", type: "Denied")
        let deniedObject = try Self.wait(rig, "certificaterequest", "denied-1") {
            Self.condition($0, "Ready")?["reason"] as? String == "Denied"
        }
        #expect((deniedObject["status"] as? [String: Any])?["failureTime"] != nil)
        let outside = try Self.request(dns: ["www.example.org"], work: rig.work, name: "outside")
        try rig.apply(Self.certificateRequest("outside-1", request: outside))
        try Self.approve(rig, "outside-1")
        let refused = try Self.wait(rig, "certificaterequest", "outside-1") {
            Self.condition($0, "Ready")?["reason"] as? String == "Failed"
        }
        #expect(
            (Self.condition(refused, "Ready")?["message"] as? String ?? "").contains("www.example.org"), "\(refused)")
        #expect((refused["status"] as? [String: Any])?["failureTime"] != nil)
        for (name, extra, usages) in [
            ("ca-1", "  isCA: true", ["digital signature", "cert sign"]),
            ("sign-1", "", ["digital signature", "code signing"]),
        ] {
            let csr = try Self.request(dns: ["\(name).team-a.example.com"], work: rig.work, name: name)
            try rig.apply(Self.certificateRequest(name, request: csr, usages: usages, extra: extra))
            try Self.approve(rig, name)
            let failed = try Self.wait(rig, "certificaterequest", name) {
                Self.condition($0, "Ready")?["reason"] as? String == "Failed"
            }
            let message = Self.condition(failed, "Ready")?["message"] as? String ?? ""
            #expect(message.contains(name == "ca-1" ? "CA certificates" : "code signing"), "\(message)")
        }
        let foreign = try Self.request(dns: ["web.team-b.example.com"], work: rig.work, name: "foreign")
        try rig.apply(Self.certificateRequest("foreign-1", namespace: "team-b", request: foreign))
        try Self.approve(rig, "foreign-1", namespace: "team-b")
        let notServed = try Self.wait(rig, "certificaterequest", "foreign-1", namespace: "team-b") {
            Self.condition($0, "Ready")?["reason"] as? String == "Failed"
        }
        #expect(
            (Self.condition(notServed, "Ready")?["message"] as? String ?? "").contains(
                "does not serve namespace team-b"))
        let redirected = try Self.request(dns: ["api.team-a.example.com"], work: rig.work, name: "redirected")
        try rig.apply(
            Self.certificateRequest("redirected-1", request: redirected, issuer: "elsewhere", kind: "SignetIssuer"))
        try Self.approve(rig, "redirected-1")
        let pending = try Self.wait(rig, "certificaterequest", "redirected-1") {
            Self.condition($0, "Ready")?["reason"] as? String == "Pending"
        }
        #expect((Self.condition(pending, "Ready")?["message"] as? String ?? "").contains("not ready"))

        Thread.sleep(forTimeInterval: 5)
        let serials = try rig.issuedSerials()
        #expect(serials.count == 2, "web and robot only, once each: \(serials)")
        #expect(
            Self.condition(try Self.object(rig, "certificaterequest", "outside-1"), "Ready")?["reason"] as? String
                == "Failed", "not retried")
        #expect(
            Self.condition(try Self.object(rig, "certificaterequest", "redirected-1"), "Ready")?["reason"] as? String
                == "Pending")
    }

    @Test(
        "istio-csr at volume: 1,000 URI-only requests (a SPIFFE ID each, 1 h, ECDSA P-256) through CertificateRequests, 20 of them for another namespace's identity: 980 issued and in the ledger with their SPIFFE IDs, the 20 Failed, none outside the policy"
    )
    func istioCSRVolume() throws {
        let rig = try Rig()
        defer { rig.stop() }
        _ = try rig.startController("one", extra: ["--cert-manager", "--concurrency", "8"])
        try Self.issuers(rig)
        let load = try Tool.run(
            "python3",
            [
                Fixtures.packageRoot + "/Tests/KubernetesDouble/istio_csr_load.py", "--api", rig.cluster.url, "--token",
                "admin",
                "--cafile", rig.cluster.caFile, "--namespace", "team-a", "--count", "1000", "--foreign", "20",
                "--timeout", "400",
            ])
        #expect(load.succeeded, "\(load.output)\(load.error)")
        let summary = try #require(
            try JSONSerialization.jsonObject(with: Data(load.output.utf8)) as? [String: Any],
            "\(load.output)\(load.error)")
        print("istio-csr volume: \(load.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        let counts = summary["counts"] as? [String: Int] ?? [:]
        #expect(
            counts["Issued"] == 980 && counts["Failed"] == 20 && summary["foreignFailed"] as? Bool == true, "\(summary)"
        )

        let auditor = try rig.server.createToken(name: "audit", allow: [], extra: ["--auditor"])
        var uris: [String] = []
        var cursor: String?
        repeat {
            let page = try Tool.run(
                "curl",
                [
                    "-s", "--cacert", rig.server.rootCertificate, "-H", "Authorization: Bearer \(auditor)",
                    rig.server.url + "/v1/certificates?limit=1000" + (cursor.map { "&cursor=\($0)" } ?? ""),
                ]
            ).output
            let json = try JSONSerialization.jsonObject(with: Data(page.utf8)) as? [String: Any]
            for item in json?["items"] as? [[String: Any]] ?? []
            where item["requester"] as? String == "serviceaccount:signet-system:signet-controller for team-a" {
                uris += item["uris"] as? [String] ?? []
                #expect((item["dnsNames"] as? [String] ?? []).isEmpty)
            }
            cursor = json?["nextCursor"] as? String
        } while cursor != nil
        #expect(uris.count == 980 && Set(uris).count == 980, "\(uris.count) recorded")
        #expect(
            uris.allSatisfy { $0.hasPrefix("spiffe://cluster.local/ns/team-a/sa/workload-") }, "none outside the policy"
        )
    }

    @Test(
        "CertificateRequest faults: Signet down (Pending, then Issued), a controller killed after Signet answered (the same certificate, not a second), and two replicas (one certificate a request)"
    )
    func certificateRequestFaults() throws {
        let rig = try Rig()
        defer { rig.stop() }
        var (controller, _) = try rig.startController("one", extra: ["--cert-manager"])
        try Self.issuers(rig)

        rig.server.stop()
        let down = try Self.request(dns: ["down.team-a.example.com"], work: rig.work, name: "down")
        try rig.apply(Self.certificateRequest("down-1", request: down))
        try Self.approve(rig, "down-1")
        let pending = try Self.wait(rig, "certificaterequest", "down-1") {
            Self.condition($0, "Ready")?["reason"] as? String == "Pending"
        }
        #expect((Self.condition(pending, "Ready")?["message"] as? String ?? "").contains("unreachable"), "\(pending)")
        rig.server = try ServerProcess(
            dataDirectory: rig.work + "/data", arguments: ["--config", rig.configPath], port: rig.serverPort)
        try Self.wait(rig, "certificaterequest", "down-1", seconds: 40) {
            Self.condition($0, "Ready")?["reason"] as? String == "Issued"
        }

        // The status write never answers: the controller is killed after Signet recorded the certificate.
        let cut = try Self.request(dns: ["cut.team-a.example.com"], work: rig.work, name: "cut")
        try rig.apply(Self.certificateRequest("cut-1", request: cut))
        let before = try rig.issuedSerials().count
        rig.server.stop()
        try Self.approve(rig, "cut-1")
        try Self.wait(rig, "certificaterequest", "cut-1") {
            Self.condition($0, "Ready")?["reason"] as? String == "Pending"
        }
        try rig.cluster.admin("faults", ["hang_names": ["cut-1"]])
        rig.server = try ServerProcess(
            dataDirectory: rig.work + "/data", arguments: ["--config", rig.configPath], port: rig.serverPort)
        let signed = try rig.killAfterNextIssuance(controller, before: before)
        #expect(signed.count == before + 1)
        (controller, _) = try rig.startController("one", extra: ["--cert-manager"])
        let resumed = try Self.wait(rig, "certificaterequest", "cut-1", seconds: 40) {
            Self.condition($0, "Ready")?["reason"] as? String == "Issued"
        }
        try Self.decoded(resumed, "certificate").write(to: rig.work + "/cut.pem")
        let serial = try Tool.run("openssl", ["x509", "-in", rig.work + "/cut.pem", "-noout", "-serial"]).output
            .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "").lowercased()
        #expect(signed.contains(serial), "the certificate Signet issued before the kill: \(serial)")
        #expect(try rig.issuedSerials().count == before + 1, "no second certificate for the interrupted request")

        // Two replicas: only the leader signs; each request gets one certificate.
        _ = try rig.startController("two", extra: ["--cert-manager"])
        let start = try rig.issuedSerials().count
        for index in 1...5 {
            let csr = try Self.request(dns: ["pair\(index).team-a.example.com"], work: rig.work, name: "pair\(index)")
            try rig.apply(Self.certificateRequest("pair\(index)-1", request: csr))
            try Self.approve(rig, "pair\(index)-1")
        }
        for index in 1...5 {
            try Self.wait(rig, "certificaterequest", "pair\(index)-1", seconds: 40) {
                Self.condition($0, "Ready")?["reason"] as? String == "Issued"
            }
        }
        Thread.sleep(forTimeInterval: 2)
        #expect(try rig.issuedSerials().count == start + 5)
    }

    @Test(
        "Kubernetes CSRs: only signet.dev/ signer names configured are signed, only once kubectl certificate approve has run; expirationSeconds kept within the policy's maximum; denied and refused ones get no certificate; kubectl get csr shows them"
    )
    func kubernetesCSRs() throws {
        let rig = try Rig()
        defer { rig.stop() }
        _ = try rig.startController("one", extra: ["--csr-signer", "signet.dev/istio=team-a"])
        func csr(
            _ name: String, signer: String = "signet.dev/istio", dns: [String], seconds: Int? = 3600,
            usages: [String] = ["digital signature", "key encipherment", "client auth"]
        ) throws {
            let request = try Self.request(dns: dns, work: rig.work, name: name)
            try rig.apply(
                """
                apiVersion: certificates.k8s.io/v1
                kind: CertificateSigningRequest
                metadata: {name: \(name)}
                spec:
                  request: \(request)
                  signerName: \(signer)
                  usages: [\(usages.joined(separator: ", "))]
                \(seconds.map { "  expirationSeconds: \($0)" } ?? "")
                """)
        }
        try csr("workload", dns: ["workload.team-a.example.com"])
        try csr("other-signer", signer: "example.com/other", dns: ["other.team-a.example.com"])
        try csr("long", dns: ["long.team-a.example.com"], seconds: 10 * 365 * 86_400)
        try csr("refused", dns: ["www.example.org"])
        try csr("denied", dns: ["denied.team-a.example.com"])
        Thread.sleep(forTimeInterval: 3)
        #expect(
            Self.decoded(try Self.object(rig, "csr", "workload", namespace: nil), "certificate").isEmpty,
            "nothing before approval")
        let listed = try rig.cluster.kubectl(["get", "csr"])
        #expect(
            listed.output.contains("workload") && listed.output.contains("signet.dev/istio"),
            "\(listed.output)\(listed.error)")

        for name in ["workload", "other-signer", "long", "refused"] {
            let approved = try rig.cluster.kubectl(["certificate", "approve", name])
            #expect(approved.succeeded, "\(approved.output)\(approved.error)")
        }
        #expect(try rig.cluster.kubectl(["certificate", "deny", "denied"]).succeeded)
        let workload = try Self.wait(rig, "csr", "workload", namespace: nil) {
            !Self.decoded($0, "certificate").isEmpty
        }
        try Self.decoded(workload, "certificate").write(to: rig.work + "/workload.pem")
        let text = try Tool.run("openssl", ["x509", "-in", rig.work + "/workload.pem", "-noout", "-text"]).output
        #expect(text.contains("DNS:workload.team-a.example.com") && text.contains("TLS Web Client Authentication"))
        #expect(
            try Tool.run("openssl", ["x509", "-in", rig.work + "/workload.pem", "-noout", "-checkend", "3500"])
                .succeeded)
        #expect(
            try !Tool.run("openssl", ["x509", "-in", rig.work + "/workload.pem", "-noout", "-checkend", "3700"])
                .succeeded, "the hour asked")
        let long = try Self.wait(rig, "csr", "long", namespace: nil) { !Self.decoded($0, "certificate").isEmpty }
        try Self.decoded(long, "certificate").write(to: rig.work + "/long.pem")
        #expect(
            try Tool.run("openssl", ["x509", "-in", rig.work + "/long.pem", "-noout", "-checkend", "\(89 * 86_400)"])
                .succeeded)
        #expect(
            try !Tool.run("openssl", ["x509", "-in", rig.work + "/long.pem", "-noout", "-checkend", "\(91 * 86_400)"])
                .succeeded,
            "ten years asked, the policy's 90 days given")
        let refused = try Self.wait(rig, "csr", "refused", namespace: nil) {
            Self.condition($0, "Failed")?["status"] as? String == "True"
        }
        #expect((Self.condition(refused, "Failed")?["message"] as? String ?? "").contains("www.example.org"))
        Thread.sleep(forTimeInterval: 3)
        #expect(
            Self.decoded(try Self.object(rig, "csr", "other-signer", namespace: nil), "certificate").isEmpty,
            "another signer's CSR is left alone")
        #expect(Self.decoded(try Self.object(rig, "csr", "denied", namespace: nil), "certificate").isEmpty)
        #expect(try rig.issuedSerials().count == 2, "workload and long, once each")
        let shown = try rig.cluster.kubectl(["get", "csr", "workload"]).output
        #expect(shown.contains("Approved"), "\(shown)")
    }
}
