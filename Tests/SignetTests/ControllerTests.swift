import Foundation
import SignetAuthority
import SignetKeys
import Testing

/// `signet controller` against the Kubernetes API double and a real Signet server: the Certificate CRD applied with
/// kubectl, keys made by the controller, certificates issued under the namespace's policy, renewals, re-issues,
/// leader election, and faults.
@Suite("signet controller: Certificates reconciled into Secrets", .serialized)
struct ControllerTests {
    final class Rig: @unchecked Sendable {
        let cluster: KubernetesDoubleProcess
        var server: ServerProcess
        let serverPort: Int
        let configPath: String
        let tokenFile: String
        /// The controller's own access to the API: its service account, with exactly the RBAC deploy/ grants.
        let controllerKubeconfig: String
        var controllers: [Process] = []
        let work: String

        init(extraConfiguration: String = "") throws {
            cluster = try KubernetesDoubleProcess()
            work = try Fixtures.temporaryDirectory("controller")
            // Signet's CRDs, and cert-manager's CertificateRequest (as cert-manager installs it) for the external issuer.
            for crd in [
                "/deploy/base/crd.yaml", "/deploy/base/issuers.yaml",
                "/Tests/KubernetesDouble/certificaterequests.cert-manager.io.yaml",
            ] {
                let applied = try cluster.kubectl(["apply", "--validate=false", "-f", Fixtures.packageRoot + crd])
                guard applied.succeeded else { throw Tool.ToolMissing(name: "the CRDs of \(crd) (\(applied.error))") }
            }
            // The server and the controller reach the API with their service accounts and exactly the permissions
            // deploy/ grants them (istio-system from the examples, team-a the documented way): what they need and
            // no more, or these tests fail.
            try cluster.loadRBAC(try KubernetesDoubleProcess.deployedRBAC(extraNamespaces: ["team-a"]))
            controllerKubeconfig = try cluster.kubeconfig(
                serviceAccount: "signet-controller", namespace: "signet-system")
            let serverKubeconfig = try cluster.kubeconfig(serviceAccount: "signet", namespace: "signet-system")
            configPath = work + "/signet.yaml"
            try """
            clusters:
              - name: home
                kubeconfig: \(serverKubeconfig)
            serviceAccounts:
              cluster: home
              audience: signet
              controllers: [signet-system/signet-controller]
              namespaces:
                - namespace: team-a
                  allow: ['*.team-a.example.com', 'spiffe://cluster.local/ns/team-a/sa/*']
                  profiles: [server, client, server-client]
                - namespace: istio-system
                  allow: [httpbin.example.com, bookinfo.com]
            \(extraConfiguration)
            """.write(to: configPath)
            serverPort = try freePort()
            server = try ServerProcess(
                dataDirectory: work + "/data", arguments: ["--config", configPath], port: serverPort)
            tokenFile = work + "/token"
            try cluster.serviceAccountToken(namespace: "signet-system", account: "signet-controller").write(
                to: tokenFile)
        }

        /// Starts a controller replica; its log goes to `work/controller-<identity>.log`.
        @discardableResult
        func startController(_ identity: String, extra: [String] = []) throws -> (process: Process, metricsPort: Int) {
            let port = try freePort()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Fixtures.signetBinary)
            process.arguments =
                [
                    "controller", "--server", server.url, "--cacert", server.rootCertificate, "--token-file", tokenFile,
                    "--kubeconfig", controllerKubeconfig, "--lease-namespace", "signet-system", "--identity", identity,
                    "--listen", "127.0.0.1:\(port)",
                ] + extra
            let log = work + "/controller-\(identity).log"
            if !FileManager.default.fileExists(atPath: log) {
                _ = FileManager.default.createFile(atPath: log, contents: nil)
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            handle.seekToEndOfFile()
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            controllers.append(process)
            return (process, port)
        }

        func controllerLog(_ identity: String) -> String {
            (try? String(contentsOfFile: work + "/controller-\(identity).log", encoding: .utf8)) ?? ""
        }

        func apply(_ yaml: String) throws {
            try yaml.write(to: work + "/applied.yaml")
            let result = try cluster.kubectl(["apply", "--validate=false", "-f", work + "/applied.yaml"])
            guard result.succeeded else { throw Tool.ToolMissing(name: "kubectl apply (\(result.error))") }
        }

        func certificate(_ name: String, namespace: String = "team-a") throws -> [String: Any] {
            let result = try cluster.kubectl(["get", "certificates.signet.dev", name, "-n", namespace, "-o", "json"])
            return (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Any] ?? [:]
        }

        static func status(_ certificate: [String: Any]) -> [String: Any] {
            certificate["status"] as? [String: Any] ?? [:]
        }

        static func condition(_ certificate: [String: Any], _ type: String) -> [String: Any]? {
            (status(certificate)["conditions"] as? [[String: Any]])?.first { $0["type"] as? String == type }
        }

        @discardableResult
        func waitFor(_ name: String, seconds: Double, _ condition: ([String: Any]) -> Bool) throws -> [String: Any] {
            let deadline = Date().addingTimeInterval(seconds)
            var last: [String: Any] = [:]
            while Date() < deadline {
                last = try certificate(name)
                if condition(last) { return last }
                Thread.sleep(forTimeInterval: 0.3)
            }
            throw ManagedDeliveryTests.Timeout(
                what: "Certificate \(name)", last: "\(Self.status(last))\n" + controllerLog("one").suffix(3000))
        }

        /// Serials Signet issued for the controller acting for team-a.
        func issuedSerials() throws -> [String] {
            let token = try server.createToken(
                name: "auditor-\(UUID().uuidString.prefix(8))", allow: [], extra: ["--auditor"])
            let page = try Tool.run(
                "curl",
                [
                    "-s", "--cacert", server.rootCertificate, "-H", "Authorization: Bearer \(token)",
                    server.url
                        + "/v1/certificates?requester=serviceaccount:signet-system:signet-controller%20for%20team-a&limit=1000",
                ]
            ).output
            let json = try JSONSerialization.jsonObject(with: Data(page.utf8)) as? [String: Any]
            return (json?["items"] as? [[String: Any]] ?? []).compactMap { $0["serial"] as? String }
        }

        /// Waits until Signet has issued one more certificate than `before` for the controller, then kills `controller`
        /// (whose write of the result never answers: the test set a hang fault on it) and clears the faults; returns
        /// the serials Signet issued.
        func killAfterNextIssuance(_ controller: Process, before: Int) throws -> [String] {
            let deadline = Date().addingTimeInterval(60)
            while try issuedSerials().count == before, Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
            kill(controller.processIdentifier, SIGKILL)
            controller.waitUntilExit()
            try cluster.admin("faults", ["hang_names": [String]()])
            return try issuedSerials()
        }

        func stop() {
            for process in controllers where process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            server.stop()
            cluster.stop()
        }
    }

    /// Waits without giving up the thread: an async test that suspends in a polling loop can wait many seconds for
    /// the concurrency pool when the parallel suites' synchronous tests hold both threads of this machine.
    static func pause(_ seconds: Double) { Thread.sleep(forTimeInterval: seconds) }

    static func certificateYAML(
        _ name: String, secret: String, names: [String], duration: String = "2m", renewBefore: String = "100s",
        extra: String = ""
    ) -> String {
        """
        apiVersion: signet.dev/v1alpha1
        kind: Certificate
        metadata: {name: \(name), namespace: team-a}
        spec:
          secretName: \(secret)
          dnsNames: [\(names.joined(separator: ", "))]
          duration: \(duration)
          renewBefore: \(renewBefore)
        \(extra)
        """
    }

    @Test(
        "a Certificate becomes a Secret, is renewed with a new key, re-issued on spec change and Secret deletion, and not for a label change"
    )
    func lifecycle() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let (_, metricsPort) = try rig.startController("one")
        try rig.apply(Self.certificateYAML("web", secret: "web-tls", names: ["web.team-a.example.com"]))

        var certificate = try rig.waitFor("web", seconds: 30) {
            Rig.condition($0, "Ready")?["status"] as? String == "True"
        }
        var status = Rig.status(certificate)
        let first = try #require(status["serial"] as? String)
        #expect(
            status["revision"] as? Int == 1 && status["notAfter"] != nil && status["renewalTime"] != nil, "\(status)")
        let secret = try #require(try rig.cluster.secret("team-a", "web-tls"))
        #expect(secret["type"] as? String == "kubernetes.io/tls")
        #expect(ManagedDeliveryTests.annotations(secret)["signet.dev/serial"] == first)
        #expect(try rig.issuedSerials() == [first], "Signet recorded the issuance for the controller acting for team-a")
        #expect(try rig.cluster.secret("team-a", "web-next-key") == nil, "the pending key is removed once delivered")

        // kubectl shows the printer columns.
        let table = try rig.cluster.kubectl(["get", "certificates", "-n", "team-a"])
        #expect(
            table.output.contains("READY") && table.output.contains("SECRET") && table.output.contains("EXPIRES"),
            "\(table.output) \(table.error)")
        #expect(
            table.output.contains("web ") && table.output.contains("True") && table.output.contains("web-tls"),
            "\(table.output)")

        // Renewal at renewalTime, with a new key.
        certificate = try rig.waitFor("web", seconds: 90) { Rig.status($0)["revision"] as? Int == 2 }
        status = Rig.status(certificate)
        let second = try #require(status["serial"] as? String)
        #expect(second != first)
        let renewed = try #require(try rig.cluster.secret("team-a", "web-tls"))
        #expect(ManagedDeliveryTests.decoded(renewed, "tls.key") != ManagedDeliveryTests.decoded(secret, "tls.key"))

        // A label in the template: the Secret gets it, no new certificate.
        try rig.apply(
            Self.certificateYAML(
                "web", secret: "web-tls", names: ["web.team-a.example.com"],
                extra: "  secretTemplate: {labels: {team: edge}}"))
        let deadline = Date().addingTimeInterval(15)
        var labels: [String: String] = [:]
        while labels["team"] != "edge", Date() < deadline {
            labels =
                ((try rig.cluster.secret("team-a", "web-tls"))?["metadata"] as? [String: Any])?["labels"]
                as? [String: String] ?? [:]
            Thread.sleep(forTimeInterval: 0.3)
        }
        #expect(labels["team"] == "edge")
        #expect(Rig.status(try rig.certificate("web"))["serial"] as? String == second)

        // More names: a new certificate at once.
        try rig.apply(
            Self.certificateYAML(
                "web", secret: "web-tls", names: ["web.team-a.example.com", "api.team-a.example.com"], duration: "2m",
                renewBefore: "30s"))
        certificate = try rig.waitFor("web", seconds: 60) { ($0["status"] as? [String: Any])?["revision"] as? Int == 3 }
        let third = try #require(Rig.status(certificate)["serial"] as? String)
        try ManagedDeliveryTests.decoded(try rig.cluster.secret("team-a", "web-tls"), "tls.crt").write(
            to: rig.work + "/web.crt")
        let sans = try Tool.run("openssl", ["x509", "-in", rig.work + "/web.crt", "-noout", "-ext", "subjectAltName"])
            .output
        #expect(sans.contains("DNS:api.team-a.example.com") && sans.contains("DNS:web.team-a.example.com"), "\(sans)")

        // The Secret deleted: recreated.
        #expect(try rig.cluster.kubectl(["delete", "secret", "web-tls", "-n", "team-a"]).succeeded)
        certificate = try rig.waitFor("web", seconds: 60) { Rig.status($0)["revision"] as? Int == 4 }
        #expect(Rig.status(certificate)["serial"] as? String != third)
        #expect(try rig.cluster.secret("team-a", "web-tls") != nil)

        // Names outside the namespace's policy: refused by Signet, explained on the Certificate.
        try rig.apply(Self.certificateYAML("stray", secret: "stray-tls", names: ["stray.team-b.example.com"]))
        let refused = try rig.waitFor("stray", seconds: 30) {
            (Rig.status($0)["failedIssuanceAttempts"] as? Int ?? 0) >= 1
        }
        #expect(
            (Rig.condition(refused, "Issuing")?["message"] as? String ?? "").contains("403"), "\(Rig.status(refused))")
        #expect(Rig.condition(refused, "Ready")?["status"] as? String == "False")
        let events = try rig.cluster.events("team-a")
        #expect(
            events.contains {
                $0["reason"] as? String == "Issued" && ($0["regarding"] as? [String: Any])?["name"] as? String == "web"
            })
        #expect(events.contains { $0["reason"] as? String == "Failed" && $0["type"] as? String == "Warning" })

        let metrics = try Tool.run("curl", ["-s", "http://127.0.0.1:\(metricsPort)/metrics"]).output
        #expect(
            metrics.contains(
                #"signet_certificate_ready_status{name="web",namespace="team-a",secret="web-tls",condition="True"} 1"#),
            "\(metrics)")
        #expect(metrics.contains(#"signet_controller_issuances_total{outcome="issued"}"#))
        #expect(Set(try rig.issuedSerials()).count == 4, "exactly one certificate per issuance")
    }

    @Test(
        "a revoked certificate is noticed and replaced at once with a new key, even with rotationPolicy Never; an Event says why"
    )
    func revokedCertificateIsReplaced() throws {
        let rig = try Rig()
        defer { rig.stop() }
        _ = try rig.startController("one", extra: ["--revocation-check-seconds", "1"])
        try rig.apply(
            Self.certificateYAML(
                "api", secret: "api-tls", names: ["api.team-a.example.com"], duration: "24h", renewBefore: "8h",
                extra: "  privateKey: {rotationPolicy: Never}"))
        let issued = try rig.waitFor("api", seconds: 30) { Rig.condition($0, "Ready")?["status"] as? String == "True" }
        let serial = try #require(Rig.status(issued)["serial"] as? String)
        let keyBefore = ManagedDeliveryTests.decoded(
            try #require(try rig.cluster.secret("team-a", "api-tls")), "tls.key")

        let admin = try rig.server.createToken(name: "security", allow: [], extra: ["--administrator"])
        let revoked = try rig.server.signet([
            "certs", "revoke", serial, "--reason", "keyCompromise", "--server", rig.server.url,
            "--cacert", rig.server.rootCertificate, "--token", admin,
        ])
        #expect(revoked.succeeded, "\(revoked.output)\(revoked.error)")
        let replaced = try rig.waitFor("api", seconds: 30) {
            Rig.status($0)["serial"] as? String != serial && Rig.condition($0, "Ready")?["status"] as? String == "True"
        }
        #expect(Rig.status(replaced)["revision"] as? Int == 2)
        #expect(
            ManagedDeliveryTests.decoded(try #require(try rig.cluster.secret("team-a", "api-tls")), "tls.key")
                != keyBefore, "a new key despite rotationPolicy Never")
        let events = try rig.cluster.events("team-a").filter { $0["reason"] as? String == "Revoked" }
        #expect(events.count == 1 && (events.first?["note"] as? String ?? "").contains(serial), "\(events)")
        #expect(try rig.issuedSerials().count == 2)
    }

    @Test(
        "ca.crl from the controller: after signet certs revoke, haproxy (crl-file through its runtime API) and nginx (ssl_crl), fed from the MUTUAL gateway's Secret, refuse the revoked client and accept the others; a stale CRL is an outage at the gateway, which Signet's re-signed CRLs prevent"
    )
    func mutualGatewayRefusesRevokedClients() async throws {
        try #require(
            Tool.isInstalled("haproxy") && Tool.isInstalled("nginx"),
            "haproxy and nginx are installed by the README's test command")
        let rootCRL = try Fixtures.temporaryDirectory("controller-root-crl") + "/root.crl"
        // CRLs valid for a minute, so that one is re-signed (and must reach the gateway) within the test.
        let rig = try Rig(extraConfiguration: "crl:\n  rootCRL: \(rootCRL)\n  validity: 60s\n  readinessMargin: 10s\n")
        defer { rig.stop() }
        let ca = rig.server.caDirectory
        let made = try rig.server.signet([
            "ca", "crl", "--root-cert", ca + "/root.crt", "--root-key", ca + "/root.key", "--out", rootCRL,
        ])
        #expect(made.succeeded, "\(made.error)")
        _ = try rig.startController("one", extra: ["--revocation-check-seconds", "1", "--crl-refresh-seconds", "1"])
        try rig.apply(
            [
                Self.certificateYAML(
                    "gateway", secret: "gateway-tls", names: ["gw.team-a.example.com"], duration: "24h",
                    renewBefore: "8h", extra: "  caCRL: true"),
                Self.certificateYAML(
                    "alice", secret: "alice-tls", names: ["alice.team-a.example.com"], duration: "24h",
                    renewBefore: "8h", extra: "  profile: client"),
                Self.certificateYAML(
                    "bob", secret: "bob-tls", names: ["bob.team-a.example.com"], duration: "24h", renewBefore: "8h",
                    extra: "  profile: client"),
                Self.certificateYAML(
                    "web", secret: "web-tls", names: ["web.team-a.example.com"], duration: "24h", renewBefore: "8h"),
            ].joined(separator: "\n---\n"))
        var serials: [String: String] = [:]
        for name in ["gateway", "alice", "bob", "web"] {
            let ready = try rig.waitFor(name, seconds: 40) {
                Rig.condition($0, "Ready")?["status"] as? String == "True"
            }
            serials[name] = Rig.status(ready)["serial"] as? String
        }
        let work = rig.work
        func secretFile(_ secret: String, _ key: String, to file: String) throws -> String {
            let text = ManagedDeliveryTests.decoded(try rig.cluster.secret("team-a", secret), key)
            try text.write(to: work + "/" + file)
            return text
        }
        let crls = try secretFile("gateway-tls", "ca.crl", to: "haproxy-crl.pem")
        #expect(
            crls.components(separatedBy: "BEGIN X509 CRL").count - 1 == 2,
            "the intermediate's and the root's CRL: \(crls)")
        #expect(
            try secretFile("bob-tls", "ca.crl", to: "bob.crl") == crls,
            "a client certificate's Secret carries ca.crl by default")
        #expect(
            try secretFile("web-tls", "ca.crl", to: "web.crl").isEmpty, "a server certificate's does not, unless asked")
        _ = try secretFile("gateway-tls", "ca.crl", to: "nginx-crl.pem")
        _ = try secretFile("gateway-tls", "ca.crt", to: "ca.crt")
        try
            (try secretFile("gateway-tls", "tls.crt", to: "gateway.crt")
            + (try secretFile("gateway-tls", "tls.key", to: "gateway.key"))).write(to: work + "/gateway.pem")
        for client in ["alice", "bob"] {
            _ = try secretFile("\(client)-tls", "tls.crt", to: "\(client).crt")
            _ = try secretFile("\(client)-tls", "tls.key", to: "\(client).key")
        }

        // haproxy as a MUTUAL gateway, its certificate and CRLs pushed from the Secret through the runtime API.
        let haproxyPort = try freePort()
        let haproxy = try HAProxyGateway.start(
            work: work,
            frontend: """
                    bind 127.0.0.1:\(haproxyPort) ssl crt \(work)/gateway.pem ca-file \(work)/ca.crt crl-file \(work)/haproxy-crl.pem verify required
                    http-request return status 200 content-type text/plain string "ok"
                """)
        defer {
            haproxy.terminate()
            haproxy.waitUntilExit()
        }
        let sync = try HAProxyGateway.follow(
            rig.cluster, namespace: "team-a", secret: "gateway-tls", work: work, certFile: work + "/gateway.pem",
            crlFile: work + "/haproxy-crl.pem")
        let syncLog = work + "/sync.log"
        defer {
            kill(sync.processIdentifier, SIGKILL)
            sync.waitUntilExit()
        }

        // nginx as the other MUTUAL gateway: ssl_crl is read at (re)load, so the Secret's ca.crl is written and nginx reloaded.
        let nginxPort = try freePort()
        try FileManager.default.createDirectory(atPath: work + "/nginx", withIntermediateDirectories: true)
        try Fixtures.nginxConfiguration(
            work: work + "/nginx",
            servers: """
                server {
                    listen 127.0.0.1:\(nginxPort) ssl;
                    ssl_certificate \(work)/gateway.crt;
                    ssl_certificate_key \(work)/gateway.key;
                    ssl_verify_client on;
                    ssl_verify_depth 2;
                    ssl_client_certificate \(work)/ca.crt;
                    ssl_crl \(work)/nginx-crl.pem;
                    location / { return 200 "verify=$ssl_client_verify\\n"; }
                }
                """
        ).write(to: work + "/nginx/nginx.conf")
        let nginx = try Fixtures.startNginx(work: work + "/nginx")
        defer {
            nginx.terminate()
            nginx.waitUntilExit()
        }

        func haproxyAnswer(_ client: String) throws -> Tool.Result {
            try Tool.run(
                "curl",
                [
                    "-sS", "--max-time", "5", "--retry", "20", "--retry-connrefused", "--retry-delay", "0", "-o",
                    "/dev/null", "-w", "%{http_code}",
                    "--resolve", "gw.team-a.example.com:\(haproxyPort):127.0.0.1", "--cacert", work + "/ca.crt",
                    "--cert", work + "/\(client).crt", "--key", work + "/\(client).key",
                    "https://gw.team-a.example.com:\(haproxyPort)/",
                ])
        }
        func nginxStatus(_ client: String) throws -> String {
            try Tool.run(
                "curl",
                [
                    "-s", "--max-time", "5", "--retry", "20", "--retry-connrefused", "--retry-delay", "0", "-o",
                    "/dev/null", "-w", "%{http_code}",
                    "--resolve", "gw.team-a.example.com:\(nginxPort):127.0.0.1", "--cacert", work + "/ca.crt",
                    "--cert", work + "/\(client).crt", "--key", work + "/\(client).key",
                    "https://gw.team-a.example.com:\(nginxPort)/",
                ]
            ).output
        }
        for client in ["alice", "bob"] {
            let answer = try haproxyAnswer(client)
            #expect(
                answer.succeeded && answer.output == "200",
                "haproxy accepts \(client) while nothing is revoked: \(answer.status) \(answer.output)")
            #expect(try nginxStatus(client) == "200", "nginx accepts \(client) while nothing is revoked")
        }

        let alice = try #require(serials["alice"])
        let admin = try rig.server.createToken(name: "security", allow: [], extra: ["--administrator"])
        let revokedAt = Date()
        let revoked = try rig.server.signet([
            "certs", "revoke", alice, "--reason", "keyCompromise", "--server", rig.server.url,
            "--cacert", rig.server.rootCertificate, "--token", admin,
        ])
        #expect(revoked.succeeded, "\(revoked.output)\(revoked.error)")

        // The controller rewrites the gateway's ca.crl within seconds, and the gateway's feed pushes it into haproxy
        // through the runtime API (what Signet does ends there); then haproxy refuses alice. On a loaded machine
        // haproxy has been seen to take several seconds more to apply a committed CRL, so its refusal is waited for
        // separately.
        var delivered = false
        let fed = Date().addingTimeInterval(30)
        while !delivered, Date() < fed {
            let log = (try? String(contentsOfFile: syncLog, encoding: .utf8)) ?? ""
            delivered = log.split(separator: "\n").contains {
                $0.contains("pushed ca.crl") && $0.contains(ManagedDeliveryTests.normalized(alice))
            }
            if !delivered { Self.pause(0.2) }
        }
        let feedSeconds = Date().timeIntervalSince(revokedAt)
        #expect(delivered, "the gateway's feed got a ca.crl listing alice within 30 s")
        print(
            "the gateway's feed pushed a ca.crl listing the revoked client \(String(format: "%.1f", feedSeconds)) s after signet certs revoke"
        )
        var refused: Tool.Result?
        let deadline = Date().addingTimeInterval(60)
        while refused == nil, Date() < deadline {
            let answer = try haproxyAnswer("alice")
            if !answer.succeeded { refused = answer } else { Self.pause(0.3) }
        }
        let seconds = Date().timeIntervalSince(revokedAt)
        if refused == nil {
            // What each part saw: Signet's CRLs as published, the Secret's ca.crl, the sync's pushes, the controller.
            let inSecret = try secretFile("gateway-tls", "ca.crl", to: "diagnosis.crl")
            let listed = try Tool.run("openssl", ["crl", "-in", work + "/diagnosis.crl", "-noout", "-text"]).output
                .uppercased()
                .contains(alice.uppercased())
            let published = rig.server.logText.split(separator: "\n").filter {
                $0.contains("CRL") || $0.contains("revoked")
            }.suffix(10)
            Issue.record(
                """
                haproxy accepted alice for 60 s after the CRL listing her was pushed; the Secret's ca.crl lists alice: \(listed) (\(inSecret.count) bytes)
                server: \(published.joined(separator: "\n"))
                sync log: \((try? String(contentsOfFile: syncLog, encoding: .utf8)) ?? "")
                controller: \(rig.controllerLog("one").suffix(2000))
                """)
        }
        #expect(
            refused?.error.contains("certificate revoked") == true,
            "the handshake fails with haproxy's alert: \(refused?.status ?? 0) \(refused?.error ?? "")")
        print("haproxy refused the revoked client \(String(format: "%.1f", seconds)) s after signet certs revoke")
        if seconds > 5 {
            let published = rig.server.logText.split(separator: "\n").filter {
                $0.contains("CRL published") || $0.contains("revoked")
            }
            print(
                "slow: server \(published.suffix(6).joined(separator: "\n"))\nsync \((try? String(contentsOfFile: syncLog, encoding: .utf8)) ?? "")\ncontroller \(rig.controllerLog("one").suffix(1500))"
            )
        }
        let bob = try haproxyAnswer("bob")
        #expect(bob.succeeded && bob.output == "200", "haproxy still accepts bob")
        let crl = try secretFile("gateway-tls", "ca.crl", to: "nginx-crl.pem")
        try crl.write(to: work + "/gateway.crl")
        let listing = try Tool.run("openssl", ["crl", "-in", work + "/gateway.crl", "-noout", "-text"]).output
            .uppercased()
        #expect(listing.contains(alice.uppercased()), "the Secret's ca.crl lists alice")
        #expect(
            try secretFile("bob-tls", "ca.crl", to: "bob.crl") == crl, "every Secret carrying ca.crl got the new CRLs")

        #expect(try Tool.run("nginx", Fixtures.nginxArguments(work: work + "/nginx") + ["-s", "reload"]).succeeded)
        var status = ""
        let reloaded = Date().addingTimeInterval(10)
        repeat {
            Self.pause(0.3)
            status = try nginxStatus("alice")
        } while status == "200" && Date() < reloaded
        #expect(status == "400", "nginx refuses alice once its ssl_crl is the Secret's ca.crl: \(status)")
        #expect(try nginxStatus("bob") == "200", "nginx still accepts bob")

        // Alice's Certificate was replaced with a new key, and the gateway accepts the replacement.
        let replaced = try rig.waitFor("alice", seconds: 30) {
            Rig.status($0)["serial"] as? String != alice && Rig.condition($0, "Ready")?["status"] as? String == "True"
        }
        #expect(Rig.status(replaced)["serial"] as? String != nil)
        _ = try secretFile("alice-tls", "tls.crt", to: "alice.crt")
        _ = try secretFile("alice-tls", "tls.key", to: "alice.key")
        let renewed = try haproxyAnswer("alice")
        #expect(
            renewed.succeeded && renewed.output == "200",
            "the replacement is accepted: \(renewed.status) \(renewed.error)")

        // The outage the reference describes: a CRL of this CA past its nextUpdate, pushed into haproxy, fails every
        // client, good ones included.
        let issuing = try await CALoader.load(
            from: CADirectory(path: ca), signer: try FileKeySigner(path: ca + "/intermediate.key", passphrase: nil))
        let past = Date().addingTimeInterval(-120)
        let stale = try await RevocationList.sign(
            by: issuing, number: 1, thisUpdate: past, nextUpdate: past.addingTimeInterval(60), entries: [])
        let current = try secretFile("gateway-tls", "ca.crl", to: "current.crl")
        let rootPart =
            "-----BEGIN X509 CRL-----" + (current.components(separatedBy: "-----BEGIN X509 CRL-----").last ?? "")
        try (stale.pem + rootPart).write(to: work + "/stale.crl")
        let pushed = try Tool.run(
            "python3",
            [
                Fixtures.packageRoot + "/Tests/Gateway/haproxy_sync.py", "--socket", work + "/admin.sock",
                "--crl-file", work + "/haproxy-crl.pem", "--push-crl", work + "/stale.crl",
            ])
        #expect(pushed.succeeded, "\(pushed.output)\(pushed.error)")
        let outage = try haproxyAnswer("bob")
        #expect(
            !outage.succeeded && outage.error.contains("certificate expired"),
            "a stale CRL refuses a good client: \(outage.status) \(outage.error)")

        // Signet re-signs its CRL at half the validity; the controller writes it into the Secret and haproxy gets it:
        // the good client passes again, and still does once the CRL served before has passed its nextUpdate.
        let nextUpdateText = try Tool.run("openssl", ["crl", "-in", work + "/current.crl", "-noout", "-nextupdate"])
            .output
            .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "nextUpdate=", with: "")
        let parser = DateFormatter()
        parser.locale = Locale(identifier: "en_US_POSIX")
        parser.dateFormat = "MMM d HH:mm:ss yyyy zzz"
        let currentNextUpdate = try #require(
            parser.date(from: nextUpdateText.replacingOccurrences(of: "  ", with: " ")), "\(nextUpdateText)")
        var recovered = false
        let recovery = Date().addingTimeInterval(45)
        while !recovered, Date() < recovery {
            Self.pause(0.5)
            recovered = try haproxyAnswer("bob").succeeded
        }
        #expect(
            recovered,
            "Signet's next CRL reaches the gateway through the Secret; sync log: \((try? String(contentsOfFile: syncLog, encoding: .utf8)) ?? "")"
        )
        #expect(try secretFile("gateway-tls", "ca.crl", to: "next.crl") != current, "a newer CRL in the Secret")
        while Date() < currentNextUpdate.addingTimeInterval(2) { Self.pause(0.5) }
        let later = try haproxyAnswer("bob")
        #expect(
            later.succeeded && later.output == "200",
            "past the earlier CRL's nextUpdate, clients still pass: \(later.status) \(later.error)")
    }

    @Test("two replicas: one leads, exactly one certificate per issuance; the leader killed, the other takes over")
    func twoReplicas() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let (one, _) = try rig.startController("one")
        let (two, _) = try rig.startController("two")
        try rig.apply(Self.certificateYAML("pair", secret: "pair-tls", names: ["pair.team-a.example.com"]))
        _ = try rig.waitFor("pair", seconds: 30) { Rig.status($0)["revision"] as? Int == 1 }
        let lease = try rig.cluster.kubectl([
            "get", "leases.coordination.k8s.io", "signet-controller", "-n", "signet-system", "-o",
            "jsonpath={.spec.holderIdentity}",
        ]).output
        #expect(lease == "one" || lease == "two", "\(lease)")
        let leader = lease == "one" ? one : two
        #expect(
            !rig.controllerLog(lease == "one" ? "two" : "one").contains("issuing"), "the standby replica never issues")

        // The leader dies; the other takes over once the lease expires (15 s) and does the renewal.
        kill(leader.processIdentifier, SIGKILL)
        leader.waitUntilExit()
        let renewed = try rig.waitFor("pair", seconds: 60) { Rig.status($0)["revision"] as? Int == 2 }
        let holder = try rig.cluster.kubectl([
            "get", "leases.coordination.k8s.io", "signet-controller", "-n", "signet-system", "-o",
            "jsonpath={.spec.holderIdentity}",
        ]).output
        #expect(holder != lease && !holder.isEmpty)
        let issued = try rig.issuedSerials()
        #expect(
            issued.count == 2 && issued.contains(Rig.status(renewed)["serial"] as? String ?? "?"),
            "one certificate per issuance: \(issued)")
    }

    @Test(
        "faults: Signet down during a renewal (backoff, then success), API conflicts and dropped watches, a controller killed mid-issuance"
    )
    func faults() throws {
        let rig = try Rig()
        defer { rig.stop() }
        var (controller, _) = try rig.startController("one", extra: ["--log-level", "debug"])
        try rig.apply(
            Self.certificateYAML(
                "flaky", secret: "flaky-tls", names: ["flaky.team-a.example.com"], duration: "1h", renewBefore: "30m"))
        _ = try rig.waitFor("flaky", seconds: 30) { Rig.status($0)["revision"] as? Int == 1 }

        // Signet stops; a change asks for a new certificate: failures are counted, explained and retried.
        rig.server.stop()
        try rig.apply(
            Self.certificateYAML(
                "flaky", secret: "flaky-tls", names: ["flaky.team-a.example.com", "www.team-a.example.com"],
                duration: "1h", renewBefore: "30m"))
        let failing = try rig.waitFor("flaky", seconds: 30) {
            (Rig.status($0)["failedIssuanceAttempts"] as? Int ?? 0) >= 1
        }
        #expect(
            (Rig.condition(failing, "Issuing")?["message"] as? String ?? "").contains("unreachable"),
            "\(Rig.status(failing))")
        #expect(Rig.condition(failing, "Ready")?["status"] as? String == "True", "the old certificate is still valid")
        rig.server = try ServerProcess(
            dataDirectory: rig.work + "/data", arguments: ["--config", rig.configPath], port: rig.serverPort)
        let recovered = try rig.waitFor("flaky", seconds: 40) { Rig.status($0)["revision"] as? Int == 2 }
        #expect(Rig.status(recovered)["failedIssuanceAttempts"] == nil)

        // Conflicts on every other write and watches dropped: another change still converges, once.
        try rig.cluster.admin("faults", ["conflict_every": 2])
        try rig.cluster.admin("close-watches")
        try rig.apply(
            Self.certificateYAML(
                "flaky", secret: "flaky-tls", names: ["flaky.team-a.example.com"], duration: "1h", renewBefore: "30m"))
        _ = try rig.waitFor("flaky", seconds: 40) { Rig.status($0)["revision"] as? Int == 3 }
        try rig.cluster.admin("faults", ["conflict_every": 0])

        // Killed after Signet answered, before the Secret was written (writes of it never answer): the next run
        // delivers that certificate.
        try rig.cluster.admin("faults", ["hang_names": ["flaky-tls"]])
        let before = try rig.issuedSerials().count
        let deleted = try rig.cluster.kubectl(["delete", "secret", "flaky-tls", "-n", "team-a"])
        #expect(deleted.succeeded, "\(deleted.error)")
        let signed = try rig.killAfterNextIssuance(controller, before: before)
        #expect(signed.count == before + 1)
        (controller, _) = try rig.startController("one")
        let resumed = try rig.waitFor("flaky", seconds: 40) { Rig.status($0)["revision"] as? Int == 4 }
        #expect(signed.contains(Rig.status(resumed)["serial"] as? String ?? "?"))
        #expect(try rig.issuedSerials().count == before + 1, "no second certificate for the interrupted issuance")
        #expect(rig.controllerLog("one").contains("resuming an interrupted renewal"))
    }

    @Test(
        "one owner per Secret: a second managed certificate on a Secret is refused with 409; a controller Certificate on a managed certificate's Secret is refused, and in 60 s no further certificate is issued for it"
    )
    func oneOwnerPerSecret() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let token = try rig.server.createToken(
            name: "team-a-edge", allow: ["*.team-a.example.com"], extra: ["--target", "home/team-a/*"])
        func api(_ method: String, _ path: String, _ body: [String: Any]) throws -> (status: Int, json: [String: Any]) {
            let text = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
            let result = try Tool.run(
                "curl",
                [
                    "-s", "--max-time", "20", "--cacert", rig.server.rootCertificate, "-X", method, "-w",
                    "\n%{http_code}",
                    "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json", "--data-binary",
                    "@-",
                    rig.server.url + path,
                ], input: text)
            let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
            return (
                Int(lines.last ?? "") ?? 0,
                (try? JSONSerialization.jsonObject(with: Data(lines.dropLast().joined(separator: "\n").utf8)))
                    as? [String: Any] ?? [:]
            )
        }
        func managed(_ name: String, secret: String, host: String = "web.team-a.example.com") -> [String: Any] {
            [
                "name": name, "dnsNames": [host], "duration": "1h",
                "target": ["cluster": "home", "namespace": "team-a", "secretName": secret],
            ]
        }
        #expect(try api("POST", "/v1/managed-certificates", managed("web-a", secret: "shared-tls")).status == 201)
        let second = try api("POST", "/v1/managed-certificates", managed("web-b", secret: "shared-tls"))
        #expect(
            second.status == 409
                && second.json["type"] as? String == "https://signet.dev/problems/secret-owned-elsewhere", "\(second)")
        #expect((second.json["detail"] as? String ?? "").contains("web-a"), "\(second.json)")
        // Moving another managed certificate onto the Secret is refused the same way.
        #expect(
            try api(
                "POST", "/v1/managed-certificates",
                managed("web-c", secret: "other-tls", host: "other.team-a.example.com")
            ).status == 201)
        let moved = try api(
            "PATCH", "/v1/managed-certificates/web-c",
            ["target": ["cluster": "home", "namespace": "team-a", "secretName": "shared-tls"]])
        #expect(moved.status == 409, "\(moved)")

        var secret: [String: Any]?
        let delivered = Date().addingTimeInterval(30)
        while ManagedDeliveryTests.annotations(secret)["signet.dev/owner"] == nil, Date() < delivered {
            secret = try rig.cluster.secret("team-a", "shared-tls")
            Thread.sleep(forTimeInterval: 0.3)
        }
        #expect(
            ManagedDeliveryTests.annotations(secret)["signet.dev/owner"] == "managed/web-a",
            "\(rig.server.logText.suffix(2000))")
        let serial = ManagedDeliveryTests.annotations(secret)["signet.dev/serial"]

        // A controller Certificate naming the same Secret: refused, with the condition saying whose it is.
        try rig.startController("one")
        try rig.apply(
            Self.certificateYAML(
                "web", secret: "shared-tls", names: ["web.team-a.example.com"], duration: "1h", renewBefore: "20m"))
        let refused = try rig.waitFor("web", seconds: 30) {
            Rig.condition($0, "Ready")?["reason"] as? String == "SecretOwnedElsewhere"
        }
        #expect((Rig.condition(refused, "Ready")?["message"] as? String ?? "").contains("managed/web-a"))
        #expect(try rig.cluster.events("team-a").contains { $0["reason"] as? String == "SecretOwnedElsewhere" })

        // No fight: for a minute, neither side issues again and the Secret keeps the managed certificate's serial.
        func issuedForTheSecret() throws -> Int {
            let auditor = try rig.server.createToken(
                name: "auditor-\(UUID().uuidString.prefix(8))", allow: [], extra: ["--auditor"])
            let page = try Tool.run(
                "curl",
                [
                    "-s", "--cacert", rig.server.rootCertificate, "-H", "Authorization: Bearer \(auditor)",
                    rig.server.url + "/v1/certificates?dnsName=web.team-a.example.com&limit=1000",
                ]
            ).output
            return
                ((try JSONSerialization.jsonObject(with: Data(page.utf8)) as? [String: Any])?["items"]
                as? [[String: Any]] ?? []).count
        }
        let before = try issuedForTheSecret()
        #expect(before == 1)
        Thread.sleep(forTimeInterval: 60)
        #expect(try issuedForTheSecret() == before, "\(rig.controllerLog("one").suffix(3000))")
        #expect(
            ManagedDeliveryTests.annotations(try rig.cluster.secret("team-a", "shared-tls"))["signet.dev/serial"]
                == serial)
    }

    @Test(
        "the Gateway shim: an annotated Istio Gateway gets a Certificate per credentialName where its workload runs, if the administrator allows that namespace; '*' is refused; a Secret Signet did not write is never adopted; removing the annotation removes them"
    )
    func gatewayShim() throws {
        let rig = try Rig()
        defer { rig.stop() }
        // The administrator lets Gateways in "default" have Certificates in istio-system (Istio's task); team-a gets nothing beyond itself.
        try rig.startController(
            "one", extra: ["--gateways", "--gateway-namespaces", "default=istio-system", "--log-level", "debug"])
        // Someone's own TLS Secret in istio-system, made by hand: no Gateway may make Signet overwrite it.
        let made = try Tool.run(
            "openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                "-subj", "/CN=foreign.example.com", "-keyout", rig.work + "/foreign.key", "-out",
                rig.work + "/foreign.crt",
            ])
        #expect(made.succeeded, "\(made.error)")
        let created = try rig.cluster.kubectl([
            "create", "secret", "tls", "foreign-credential", "-n", "istio-system",
            "--cert", rig.work + "/foreign.crt", "--key", rig.work + "/foreign.key",
        ])
        #expect(created.succeeded, "\(created.error)")
        let foreignBefore = try rig.cluster.kubectl([
            "get", "secret", "foreign-credential", "-n", "istio-system", "-o", "json",
        ]).output
        // As in Istio's task: the Gateway in "default", the ingress gateway pods (whose namespace Istio reads the
        // credentialName Secrets from) in istio-system.
        try rig.apply(
            """
            apiVersion: v1
            kind: Pod
            metadata:
              name: istio-ingressgateway-7d4f
              namespace: istio-system
              labels: {istio: ingressgateway, app: istio-ingressgateway}
            spec:
              containers: [{name: istio-proxy, image: istio/proxyv2}]
            ---
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata:
              name: mygateway
              namespace: default
              annotations: {signet.dev/issue: "true"}
            spec:
              selector: {istio: ingressgateway}
              servers:
              - port: {number: 443, name: https-httpbin, protocol: HTTPS}
                tls: {mode: SIMPLE, credentialName: httpbin-credential}
                hosts: [default/httpbin.example.com]
              - port: {number: 443, name: https-bookinfo, protocol: HTTPS}
                tls: {mode: MUTUAL, credentialName: bookinfo-credential}
                hosts: ["*/bookinfo.com"]
              - port: {number: 443, name: https-any, protocol: HTTPS}
                tls: {mode: SIMPLE, credentialName: everything-credential}
                hosts: ["*"]
              - port: {number: 80, name: http, protocol: HTTP}
                hosts: [httpbin.example.com]
              - port: {number: 443, name: https-foreign, protocol: HTTPS}
                tls: {mode: SIMPLE, credentialName: foreign-credential}
                hosts: [httpbin.example.com]
            ---
            # A tenant's Gateways reaching for istio-system: through the ingress pods' selector, and through the annotation.
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata:
              name: sneaky
              namespace: team-a
              annotations: {signet.dev/issue: "true"}
            spec:
              selector: {istio: ingressgateway}
              servers:
              - port: {number: 443, name: https, protocol: HTTPS}
                tls: {mode: SIMPLE, credentialName: foreign-credential}
                hosts: [www.team-a.example.com]
            ---
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata:
              name: sneaky-annotated
              namespace: team-a
              annotations: {signet.dev/issue: "true", signet.dev/secret-namespace: istio-system}
            spec:
              selector: {app: team-a-gateway}
              servers:
              - port: {number: 443, name: https, protocol: HTTPS}
                tls: {mode: SIMPLE, credentialName: foreign-credential}
                hosts: [www.team-a.example.com]
            ---
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata: {name: theirs, namespace: istio-system}
            spec:
              selector: {istio: ingressgateway}
              servers:
              - port: {number: 443, name: https, protocol: HTTPS}
                tls: {mode: SIMPLE, credentialName: theirs-credential}
                hosts: [theirs.example.com]
            ---
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata:
              name: lonely
              namespace: team-x
              annotations: {signet.dev/issue: "true"}
            spec:
              selector: {app: nothing-runs-this}
              servers:
              - port: {number: 443, name: https, protocol: HTTPS}
                tls: {mode: SIMPLE, credentialName: lonely-credential}
                hosts: [lonely.example.com]
            """)
        var secrets: [String: [String: Any]] = [:]
        let deadline = Date().addingTimeInterval(30)
        while secrets.count < 2, Date() < deadline {
            for name in ["httpbin-credential", "bookinfo-credential"] where secrets[name] == nil {
                secrets[name] = try rig.cluster.secret("istio-system", name)
            }
            Thread.sleep(forTimeInterval: 0.3)
        }
        #expect(secrets.count == 2, "\(rig.controllerLog("one").suffix(2000))")
        try ManagedDeliveryTests.decoded(secrets["bookinfo-credential"], "tls.crt").write(
            to: rig.work + "/bookinfo.crt")
        let sans = try Tool.run(
            "openssl", ["x509", "-in", rig.work + "/bookinfo.crt", "-noout", "-ext", "subjectAltName"]
        ).output
        #expect(sans.contains("DNS:bookinfo.com"), "\(sans)")
        #expect(!ManagedDeliveryTests.decoded(secrets["bookinfo-credential"], "ca.crt").isEmpty, "MUTUAL needs ca.crt")
        let bookinfo = try rig.certificate("bookinfo-credential", namespace: "istio-system")["spec"] as? [String: Any]
        let httpbin = try rig.certificate("httpbin-credential", namespace: "istio-system")["spec"] as? [String: Any]
        #expect(
            bookinfo?["caCRL"] as? Bool == true && httpbin?["caCRL"] == nil,
            "a MUTUAL server's Certificate asks for ca.crl, a SIMPLE one's does not")
        let listed = try rig.cluster.kubectl(["get", "certificates.signet.dev", "-n", "istio-system", "-o", "name"])
            .output
        #expect(listed.contains("httpbin-credential") && listed.contains("bookinfo-credential"), "\(listed)")
        #expect(!listed.contains("everything-credential") && !listed.contains("theirs-credential"), "\(listed)")
        let events = try rig.cluster.events("default")
        #expect(
            events.contains {
                $0["reason"] as? String == "HostRefused" && ($0["note"] as? String ?? "").contains("matches every name")
            })
        // The tenant's Gateways got no Certificate outside team-a, and a Warning naming the rule; the hand-made Secret in
        // istio-system, which the allowed Gateway in "default" also names, is not adopted: not a byte of it changed.
        var refusedGateways: Set<String> = []
        let warned = Date().addingTimeInterval(20)
        while refusedGateways.count < 2, Date() < warned {
            refusedGateways = Set(
                try rig.cluster.events("team-a").filter {
                    $0["reason"] as? String == "NamespaceNotAllowed"
                        && ($0["note"] as? String ?? "").contains("only in team-a")
                }.compactMap { ($0["regarding"] as? [String: Any])?["name"] as? String })
            Thread.sleep(forTimeInterval: 0.3)
        }
        #expect(refusedGateways == ["sneaky", "sneaky-annotated"], "\(rig.controllerLog("one").suffix(3000))")
        for gateway in ["team-a.sneaky", "team-a.sneaky-annotated"] {
            let labelled = try rig.cluster.kubectl([
                "get", "certificates.signet.dev", "-A", "-l", "signet.dev/gateway=\(gateway)", "-o", "name",
            ])
            #expect(
                labelled.succeeded && labelled.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty,
                "\(labelled.output)\(labelled.error)")
        }
        var foreign: [String: Any] = [:]
        let blocked = Date().addingTimeInterval(20)
        while Date() < blocked {
            foreign = try rig.certificate("foreign-credential", namespace: "istio-system")
            if Rig.condition(foreign, "Ready")?["reason"] as? String == "SecretNotManaged" { break }
            Thread.sleep(forTimeInterval: 0.3)
        }
        #expect(Rig.condition(foreign, "Ready")?["reason"] as? String == "SecretNotManaged", "\(Rig.status(foreign))")
        #expect(
            try rig.cluster.kubectl(["get", "secret", "foreign-credential", "-n", "istio-system", "-o", "json"]).output
                == foreignBefore)
        // No pods behind a Gateway's selector: its own namespace, and a Warning saying so.
        #expect(
            try rig.cluster.kubectl(["get", "certificates.signet.dev", "-n", "team-x", "-o", "name"]).output.contains(
                "lonely-credential"))
        #expect(try rig.cluster.events("team-x").contains { $0["reason"] as? String == "NoWorkload" })

        // The annotation removed: the Certificates go, the Secrets stay.
        #expect(
            try rig.cluster.kubectl([
                "annotate", "gateways.networking.istio.io", "mygateway", "-n", "default", "signet.dev/issue-",
            ]).succeeded)
        var remaining = "?"
        let gone = Date().addingTimeInterval(20)
        while !remaining.isEmpty, Date() < gone {
            remaining = try rig.cluster.kubectl(["get", "certificates.signet.dev", "-n", "istio-system", "-o", "name"])
                .output
                .trimmingCharacters(in: .whitespacesAndNewlines)
            Thread.sleep(forTimeInterval: 0.3)
        }
        #expect(remaining.isEmpty, "\(remaining)")
        #expect(try rig.cluster.secret("istio-system", "httpbin-credential") != nil)

        // Annotated again, then deleted while no controller runs: the next controller removes the orphans.
        #expect(
            try rig.cluster.kubectl([
                "annotate", "gateways.networking.istio.io", "mygateway", "-n", "default", "signet.dev/issue=true",
            ]).succeeded)
        func certificates() throws -> String {
            try rig.cluster.kubectl(["get", "certificates.signet.dev", "-n", "istio-system", "-o", "name"]).output
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let back = Date().addingTimeInterval(20)
        while try !certificates().contains("httpbin-credential"), Date() < back { Thread.sleep(forTimeInterval: 0.3) }
        #expect(try certificates().contains("httpbin-credential"))
        for process in rig.controllers where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let deleted = try rig.cluster.kubectl(["delete", "gateways.networking.istio.io", "mygateway", "-n", "default"])
        #expect(deleted.succeeded, "\(deleted.output) \(deleted.error)")
        try rig.startController("two", extra: ["--gateways"])
        let cleaned = Date().addingTimeInterval(40)
        while try !certificates().isEmpty, Date() < cleaned { Thread.sleep(forTimeInterval: 0.3) }
        #expect(try certificates().isEmpty)
    }
}
