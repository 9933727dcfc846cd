import Foundation
import Logging
import SignetAuthority
import SignetDelivery
import SignetHTTP
import SignetKeys
import SignetKubernetes
import Testing
import X509

/// Delivering certificates into Kubernetes, against the API server double; real kubectl proves the double and reads
/// what Signet wrote.
@Suite("Kubernetes: the API double, the client, Istio-ready Secrets", .serialized)
struct KubernetesTests {
    @Test(
        "real kubectl works against the double: create secret tls, get -o yaml, apply, replace with a stale resourceVersion, errors"
    )
    func kubectlFidelity() throws {
        let cluster = try KubernetesDoubleProcess()
        defer { cluster.stop() }
        let work = cluster.directory
        let made = try Tool.run(
            "openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                work + "/k.pem",
                "-out", work + "/c.pem", "-subj", "/CN=kubectl.example.com", "-days", "1",
            ])
        #expect(made.succeeded)

        let created = try cluster.kubectl([
            "create", "secret", "tls", "web", "--cert", work + "/c.pem", "--key", work + "/k.pem", "-n", "istio-system",
        ])
        #expect(created.succeeded && created.output.contains("secret/web created"), "\(created.error)")
        let yaml = try cluster.kubectl(["get", "secret", "web", "-n", "istio-system", "-o", "yaml"])
        #expect(
            yaml.output.contains("type: kubernetes.io/tls") && yaml.output.contains("tls.crt:")
                && yaml.output.contains("resourceVersion:"), "\(yaml.output)")
        let duplicate = try cluster.kubectl([
            "create", "secret", "tls", "web", "--cert", work + "/c.pem", "--key", work + "/k.pem", "-n", "istio-system",
        ])
        #expect(
            !duplicate.succeeded && duplicate.error.contains(#"secrets "web" already exists"#), "\(duplicate.error)")
        let missing = try cluster.kubectl(["get", "secret", "nope", "-n", "istio-system"])
        #expect(!missing.succeeded && missing.error.contains("(NotFound)"), "\(missing.error)")

        let manifest = """
            apiVersion: v1
            kind: Secret
            metadata: {name: app, namespace: istio-system, labels: {team: edge}}
            type: Opaque
            stringData: {token: one}
            """
        try manifest.write(to: work + "/app.yaml")
        #expect(
            try cluster.kubectl(["apply", "--validate=false", "-f", work + "/app.yaml"]).output.contains(
                "secret/app created"))
        try manifest.replacingOccurrences(of: "one", with: "two").write(to: work + "/app.yaml")
        #expect(
            try cluster.kubectl(["apply", "--validate=false", "-f", work + "/app.yaml"]).output.contains(
                "secret/app configured"))
        let token = try cluster.kubectl(["get", "secret", "app", "-n", "istio-system", "-o", "jsonpath={.data.token}"])
            .output
        #expect(Data(base64Encoded: token).map { String(decoding: $0, as: UTF8.self) } == "two")

        // A replace that carries an old resourceVersion loses to the write in between.
        let stale = try cluster.kubectl(["get", "secret", "app", "-n", "istio-system", "-o", "json"]).output
        _ = try cluster.kubectl(["label", "secret", "app", "-n", "istio-system", "changed=yes"])
        try stale.write(to: work + "/stale.json")
        let replaced = try cluster.kubectl(["replace", "--validate=false", "-f", work + "/stale.json"])
        #expect(!replaced.succeeded && replaced.error.contains("the object has been modified"), "\(replaced.error)")
        // So does a patch that names the resourceVersion it was computed from, as the API server enforces.
        let staleVersion = try #require(
            (try JSONSerialization.jsonObject(with: Data(stale.utf8)) as? [String: Any])
                .flatMap { ($0["metadata"] as? [String: Any])?["resourceVersion"] as? String })
        let patched = try cluster.kubectl([
            "patch", "secret", "app", "-n", "istio-system", "--type", "merge",
            "-p", #"{"metadata":{"resourceVersion":"\#(staleVersion)","labels":{"late":"yes"}}}"#,
        ])
        #expect(
            !patched.succeeded && patched.error.contains("the object has been modified"),
            "\(patched.output)\(patched.error)")
        #expect(
            try cluster.kubectl([
                "patch", "secret", "app", "-n", "istio-system", "--type", "merge", "-p",
                #"{"metadata":{"labels":{"late":"yes"}}}"#,
            ]).succeeded)
        // Secret keys and sizes as the API server checks them.
        // (kubectl checks key names itself, so the double is asked directly.)
        let badKey = try Tool.run(
            "curl",
            [
                "-s", "--cacert", cluster.caFile, "-H", "Authorization: Bearer admin", "-H",
                "Content-Type: application/json",
                "--data-binary",
                #"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"odd"},"data":{"a/b":"eA=="}}"#,
                cluster.url + "/api/v1/namespaces/istio-system/secrets",
            ])
        #expect(
            badKey.output.contains(#""code": 422"#) && badKey.output.contains("a valid config key"), "\(badKey.output)")
        try String(repeating: "x", count: 1_100_000).write(to: work + "/big.bin")
        let huge = try cluster.kubectl([
            "create", "secret", "generic", "huge", "-n", "istio-system", "--from-file=big.bin=" + work + "/big.bin",
        ])
        #expect(!huge.succeeded && huge.error.contains("at most 1048576 bytes"), "\(huge.error)")

        let forbidden = try cluster.kubectl(["get", "secrets", "-n", "default"], user: "gateway")
        #expect(!forbidden.succeeded && forbidden.error.contains("(Forbidden)"), "\(forbidden.error)")
    }

    @Test(
        "signet issue --secret writes an Istio-ready Secret; a second issue renews it in place and keeps what others added"
    )
    func issueIntoSecret() throws {
        let cluster = try KubernetesDoubleProcess()
        defer { cluster.stop() }
        let server = try ServerProcess()
        defer { server.stop() }
        let token = try server.createToken(name: "gateway", allow: ["*.example.com"])
        func issue(_ extra: [String] = [], user: String = "admin", secret: String = "istio-system/httpbin-credential")
            throws -> Tool.Result
        {
            try server.signet(
                [
                    "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
                    "--generate-key", "ecdsa-p256",
                    "--dns", "httpbin.example.com", "--secret", secret, "--kubeconfig", cluster.kubeconfig(user),
                ] + extra)
        }
        let first = try issue()
        #expect(first.succeeded, "\(first.error)")
        let secret = try #require(try cluster.secret("istio-system", "httpbin-credential"))
        #expect(secret["type"] as? String == "kubernetes.io/tls")
        let data = try #require(secret["data"] as? [String: String])
        #expect(Set(data.keys) == ["tls.crt", "tls.key", "ca.crt"], "no generic cert/key/cacert keys: \(data.keys)")
        let metadata = try #require(secret["metadata"] as? [String: Any])
        let annotations = metadata["annotations"] as? [String: String] ?? [:]
        let serial = try #require(annotations["signet.dev/serial"])
        #expect(
            first.output.contains(serial) && annotations["signet.dev/not-after"] != nil
                && annotations["signet.dev/renew-after"] != nil)
        #expect((metadata["labels"] as? [String: String])?["app.kubernetes.io/managed-by"] == "signet")

        // What the gateway would load: tls.crt (leaf + intermediate) verifies against ca.crt, and tls.key is its key.
        let files = try Fixtures.temporaryDirectory("secret-files")
        for (key, file) in [("tls.crt", "/tls.crt"), ("tls.key", "/tls.key"), ("ca.crt", "/ca.crt")] {
            try Data(base64Encoded: try #require(data[key]))!.write(to: URL(fileURLWithPath: files + file))
        }
        let chain = try PEMFiles.certificates(at: files + "/tls.crt")
        #expect(chain.count == 2, "leaf and intermediate, no root")
        try Tool.run(
            "sh",
            [
                "-c",
                "awk 'n<1; /END CERTIFICATE/ {n++}' \(files)/tls.crt > \(files)/leaf.crt; awk 'n>=1; /END CERTIFICATE/ {n++}' \(files)/tls.crt > \(files)/intermediate.crt",
            ])
        let verify = try Tool.run(
            "openssl",
            ["verify", "-CAfile", files + "/ca.crt", "-untrusted", files + "/intermediate.crt", files + "/leaf.crt"])
        #expect(verify.succeeded, "\(verify.output)\(verify.error)")
        let keyPublic = try Tool.run("openssl", ["pkey", "-in", files + "/tls.key", "-pubout"]).output
        let certificatePublic = try Tool.run("openssl", ["x509", "-in", files + "/leaf.crt", "-noout", "-pubkey"])
            .output
        #expect(!keyPublic.isEmpty && keyPublic == certificatePublic)
        #expect(
            try String(contentsOfFile: files + "/tls.key", encoding: .utf8).hasPrefix("-----BEGIN PRIVATE KEY-----"),
            "PKCS#8")

        // Someone else adds a key, a label and an annotation; the renewal keeps them and changes key and serial.
        _ = try cluster.kubectl(["label", "secret", "httpbin-credential", "-n", "istio-system", "team=edge"])
        _ = try cluster.kubectl(["annotate", "secret", "httpbin-credential", "-n", "istio-system", "owner=platform"])
        _ = try cluster.kubectl([
            "patch", "secret", "httpbin-credential", "-n", "istio-system", "--type", "merge", "-p",
            #"{"stringData":{"extra.txt":"keep me"}}"#,
        ])
        let second = try issue()
        #expect(second.succeeded, "\(second.error)")
        let renewed = try #require(try cluster.secret("istio-system", "httpbin-credential"))
        let renewedMetadata = try #require(renewed["metadata"] as? [String: Any])
        #expect((renewedMetadata["annotations"] as? [String: String])?["signet.dev/serial"] != serial)
        #expect((renewedMetadata["annotations"] as? [String: String])?["owner"] == "platform")
        #expect((renewedMetadata["labels"] as? [String: String])?["team"] == "edge")
        let renewedData = try #require(renewed["data"] as? [String: String])
        #expect(renewedData["extra.txt"] != nil && renewedData["tls.key"] != data["tls.key"])

        let reasons = try cluster.events("istio-system").compactMap { $0["reason"] as? String }
        #expect(reasons == ["CertificateIssued", "CertificateRenewed"], "\(reasons)")

        // The gateway's token may only write in istio-system: elsewhere, a clear refusal that says what happened.
        let refused = try issue(user: "gateway", secret: "default/elsewhere")
        #expect(
            !refused.succeeded && refused.error.contains("was issued, but the Secret was not written")
                && refused.error.contains("403 Forbidden"), "\(refused.error)")
    }

    @Test(
        "a Secret of another type, or one Signet does not manage, is never overwritten; --adopt takes over a TLS Secret and drops Istio's shadowing keys"
    )
    func ownership() throws {
        let cluster = try KubernetesDoubleProcess()
        defer { cluster.stop() }
        let server = try ServerProcess()
        defer { server.stop() }
        let token = try server.createToken(name: "gateway", allow: ["*.example.com"])
        func issue(_ secret: String, adopt: Bool = false) throws -> Tool.Result {
            try server.signet(
                [
                    "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
                    "--generate-key", "ecdsa-p256",
                    "--dns", "own.example.com", "--secret", secret, "--kubeconfig", cluster.kubeconfig(),
                ] + (adopt ? ["--adopt"] : []))
        }
        _ = try cluster.kubectl([
            "create", "secret", "generic", "opaque", "-n", "istio-system", "--from-literal=password=hunter2",
        ])
        let wrongType = try issue("istio-system/opaque")
        #expect(!wrongType.succeeded && wrongType.error.contains("has type Opaque"), "\(wrongType.error)")
        #expect(try cluster.secret("istio-system", "opaque")?["type"] as? String == "Opaque")

        let work = cluster.directory
        _ = try Tool.run(
            "openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                work + "/k.pem",
                "-out", work + "/c.pem", "-subj", "/CN=own.example.com", "-days", "1",
            ])
        _ = try cluster.kubectl([
            "create", "secret", "tls", "handmade", "-n", "istio-system", "--cert", work + "/c.pem", "--key",
            work + "/k.pem",
        ])
        _ = try cluster.kubectl([
            "patch", "secret", "handmade", "-n", "istio-system", "--type", "merge", "-p",
            #"{"stringData":{"cert":"stale","key":"stale"}}"#,
        ])
        let unmanaged = try issue("istio-system/handmade")
        #expect(!unmanaged.succeeded && unmanaged.error.contains("not managed by Signet"), "\(unmanaged.error)")
        let before = try #require(try cluster.secret("istio-system", "handmade")?["data"] as? [String: String])
        #expect(before["cert"] != nil)

        let adopted = try issue("istio-system/handmade", adopt: true)
        #expect(adopted.succeeded, "\(adopted.error)")
        let after = try #require(try cluster.secret("istio-system", "handmade")?["data"] as? [String: String])
        #expect(after["cert"] == nil && after["key"] == nil && after["tls.crt"] != before["tls.crt"])
        #expect(
            try cluster.events("istio-system").contains {
                $0["reason"] as? String == "SecretNotWritten" && $0["type"] as? String == "Warning"
            })
    }

    @Test("conflicts and server errors during a write are retried until the Secret is written once")
    func conflictsConverge() async throws {
        let cluster = try KubernetesDoubleProcess()
        defer { cluster.stop() }
        let client = try KubernetesClient(
            configuration: try KubernetesConfiguration.kubeconfig(path: cluster.kubeconfig()),
            logger: Logger(label: "test"))
        let delivery = SecretDelivery(client: client, logger: Logger(label: "test"))
        let (ca, _) = try await Fixtures.issuingCA()
        do {
            try cluster.admin("faults", ["conflict_every": 2, "error_every": 3])
            for round in 0..<3 {
                let contents = try await Self.contents(from: ca, host: "conflict.example.com")
                let written = try await delivery.deliver(contents, namespace: "istio-system", name: "conflicted")
                #expect(
                    written.annotations[TLSSecret.serialAnnotation]
                        == SerialNumbers.hex(contents.chain[0].serialNumber), "round \(round)")
            }
            try cluster.admin("faults", ["conflict_every": 0, "error_every": 0])
            let stored = try await client.getSecret(namespace: "istio-system", name: "conflicted")
            #expect(stored?.data["tls.crt"] != nil)
            // The faults happened, and each round's Secret was written exactly once.
            let stats = try cluster.stats()
            #expect(
                (stats["conflicts_injected"] as? Int ?? 0) >= 1 && (stats["errors_injected"] as? Int ?? 0) >= 1,
                "\(stats)")
            #expect(((stats["writes"] as? [String: Int]) ?? [:])["secrets/istio-system/conflicted"] == 3, "\(stats)")
        }
        try await client.shutdown()
    }

    @Test(
        "watches: events after the listed resourceVersion, bookmarks, a closed stream ends, an expired resourceVersion says so"
    )
    func watches() async throws {
        let cluster = try KubernetesDoubleProcess()
        defer { cluster.stop() }
        let client = try KubernetesClient(
            configuration: try KubernetesConfiguration.kubeconfig(path: cluster.kubeconfig()),
            logger: Logger(label: "test"))
        let listed = try await client.listSecrets(
            namespace: "istio-system", labelSelector: "app.kubernetes.io/managed-by=signet")
        #expect(listed.items.isEmpty)
        let stream = client.watchSecrets(
            namespace: "istio-system", labelSelector: "app.kubernetes.io/managed-by=signet",
            resourceVersion: listed.resourceVersion, timeoutSeconds: 20)
        let delivery = SecretDelivery(client: client, logger: Logger(label: "test"))
        let (ca, _) = try await Fixtures.issuingCA()
        try await delivery.deliver(
            try await Self.contents(from: ca, host: "watched.example.com"), namespace: "istio-system", name: "watched")
        var seen: [String] = []
        for try await event in stream {
            switch event {
            case .added(let object): seen.append("added \(object.name)")
            case .bookmark: seen.append("bookmark")
            default: seen.append("\(event)")
            }
            if seen.contains("bookmark") && seen.contains("added watched") {
                try cluster.admin("close-watches")
            }
        }
        // A bookmark may come before the write lands (the double sends them on a timer); the objects seen are exactly
        // those written after the list.
        #expect(seen.filter { !$0.hasPrefix("bookmark") } == ["added watched"] && seen.contains("bookmark"), "\(seen)")

        try cluster.admin("compact")
        var expired = false
        for try await event in client.watchSecrets(
            namespace: "istio-system", resourceVersion: listed.resourceVersion, timeoutSeconds: 5)
        where event == .expired {
            expired = true
        }
        #expect(expired, "a resourceVersion older than the kept history is answered 410 Expired")
        try await client.shutdown()
    }

    @Test(
        "the double evaluates RBAC as the API server does: deploy/'s service accounts reach Secrets only where a namespace grants them, and never the CA's"
    )
    func deployedRBACIsEnforced() throws {
        let cluster = try KubernetesDoubleProcess()
        defer { cluster.stop() }
        #expect(
            try cluster.kubectl(["apply", "--validate=false", "-f", Fixtures.packageRoot + "/deploy/base/crd.yaml"])
                .succeeded)
        #expect(
            try cluster.kubectl([
                "create", "secret", "generic", "signet-ca", "-n", "signet-system",
                "--from-literal=intermediate.key=secret",
            ]).succeeded)
        try cluster.loadRBAC(try KubernetesDoubleProcess.deployedRBAC(extraNamespaces: ["team-a"]))
        let controller = try cluster.kubeconfig(serviceAccount: "signet-controller", namespace: "signet-system")
        let server = try cluster.kubeconfig(serviceAccount: "signet", namespace: "signet-system")
        func kubectl(_ kubeconfig: String, _ arguments: [String]) throws -> Tool.Result {
            try Tool.run(
                "kubectl",
                ["--kubeconfig", kubeconfig, "--cache-dir", cluster.directory + "/cache-\(kubeconfig.hashValue)"]
                    + arguments)
        }
        for kubeconfig in [controller, server] {
            #expect(try kubectl(kubeconfig, ["get", "secrets", "-n", "team-a"]).succeeded)
            #expect(try kubectl(kubeconfig, ["get", "secrets", "-n", "istio-system"]).succeeded)
            let elsewhere = try kubectl(kubeconfig, ["get", "secrets", "-n", "team-b"])
            #expect(!elsewhere.succeeded && elsewhere.error.contains("forbidden"), "\(elsewhere.error)")
            let everywhere = try kubectl(kubeconfig, ["get", "secrets", "-A"])
            #expect(!everywhere.succeeded && everywhere.error.contains("at the cluster scope"), "\(everywhere.error)")
            let caKey = try kubectl(kubeconfig, ["get", "secret", "signet-ca", "-n", "signet-system"])
            #expect(!caKey.succeeded && caKey.error.contains("forbidden"), "\(caKey.error)")
        }
        #expect(try kubectl(controller, ["get", "certificates.signet.dev", "-A"]).succeeded)
        #expect(
            try !kubectl(server, ["get", "certificates.signet.dev", "-A"]).succeeded,
            "the server has no business with Certificates")
        #expect(
            try !kubectl(server, ["delete", "secret", "anything", "-n", "team-a"]).error.contains("NotFound"),
            "the server never deletes Secrets")
    }

    @Test("kubeconfig and in-cluster configuration: the supported subset, and clear errors for the rest")
    func configuration() throws {
        let directory = try Fixtures.temporaryDirectory("kubeconfig")
        try "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".write(to: directory + "/ca.crt")
        try "token-from-file\n".write(to: directory + "/token")
        let caData = Data("-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n".utf8).base64EncodedString()
        let yaml = """
            apiVersion: v1
            kind: Config
            current-context: aks
            clusters:
            - name: aks
              cluster: {server: "https://aks.example.com:443", certificate-authority-data: \(caData)}
            - name: local
              cluster: {server: "https://127.0.0.1:6443", certificate-authority: ca.crt, insecure-skip-tls-verify: true}
            users:
            - name: ci
              user: {tokenFile: token}
            - name: kubelogin
              user:
                exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: kubelogin, args: [get-token]}
            contexts:
            - name: aks
              context: {cluster: aks, user: kubelogin, namespace: istio-system}
            - name: local
              context: {cluster: local, user: ci}
            """
        let local = try KubernetesConfiguration.kubeconfig(yaml: yaml, context: "local", baseDirectory: directory)
        #expect(local.server == "https://127.0.0.1:6443" && local.insecureSkipTLSVerify && local.namespace == "default")
        #expect(
            local.credential == .tokenFile(directory + "/token")
                && local.certificateAuthorityPEM?.contains("MIIB") == true)
        #expect {
            try KubernetesConfiguration.kubeconfig(yaml: yaml, baseDirectory: directory)
        } throws: { error in
            "\(error)".contains("an exec plugin")
                && "\(error)".contains("supported: token, tokenFile, client-certificate")
        }
        #expect(throws: KubernetesError.self) {
            try KubernetesConfiguration.kubeconfig(yaml: yaml, context: "missing", baseDirectory: directory)
        }

        try "istio-system".write(to: directory + "/namespace")
        let pod = try KubernetesConfiguration.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"], directory: directory)
        #expect(
            pod.server == "https://[fd00::1]:443" && pod.namespace == "istio-system"
                && pod.credential == .tokenFile(directory + "/token"))
        #expect(throws: KubernetesError.self) {
            try KubernetesConfiguration.inCluster(environment: [:], directory: directory)
        }
    }

    @Test(
        "transport: a plain-HTTP API server is refused unless allowed; tls-server-name is what the certificate is verified against"
    )
    func transport() async throws {
        var plain = KubernetesConfiguration(
            server: "http://127.0.0.1:8080", certificateAuthorityPEM: nil, credential: .none)
        #expect {
            try KubernetesClient(configuration: plain, logger: Logger(label: "test"))
        } throws: { error in
            "\(error)".contains("plain HTTP") && "\(error)".contains("allowPlainHTTP")
        }
        plain.allowPlainHTTP = true
        try await KubernetesClient(configuration: plain, logger: Logger(label: "test")).shutdown()

        // The double's certificate names only api.cluster.internal, and it is reached at 127.0.0.1 (as an AKS
        // private cluster is, through an address its certificate does not name).
        let cluster = try KubernetesDoubleProcess(certificateNames: ["api.cluster.internal"])
        defer { cluster.stop() }
        var retry = KubernetesClient.defaultRetry
        retry.attempts = 1
        func list(serverName: String?) async throws {
            var configuration = try KubernetesConfiguration.kubeconfig(path: cluster.kubeconfig())
            configuration.tlsServerName = serverName
            let client = try KubernetesClient(configuration: configuration, retry: retry, logger: Logger(label: "test"))
            do {
                _ = try await client.listSecrets(namespace: "istio-system")
            } catch {
                try await client.shutdown()
                throw error
            }
            try await client.shutdown()
        }
        await #expect(throws: (any Error).self, "127.0.0.1 is not a name of the certificate") {
            try await list(serverName: nil)
        }
        try await list(serverName: "api.cluster.internal")
        await #expect(throws: (any Error).self, "nor is another name") {
            try await list(serverName: "api.elsewhere.example")
        }
    }

    @Test("a broken Secret is never written: a key that is not the certificate's, a chain that does not verify")
    func brokenContentsRefused() async throws {
        let (ca, _) = try await Fixtures.issuingCA()
        var contents = try await Self.contents(from: ca, host: "broken.example.com")
        let (_, otherKeyPEM) = try KeyAlgorithm.ecdsaP256.generate()
        var wrongKey = contents
        wrongKey.privateKeyPEM = otherKeyPEM
        #expect(throws: SecretRefusal.brokenContents("the private key does not match the certificate")) {
            try TLSSecret.verify(wrongKey)
        }
        let (otherCA, _) = try await Fixtures.issuingCA()
        contents.root = otherCA.root
        #expect { try TLSSecret.verify(contents) } throws: { "\($0)".contains("is not signed by") }
    }

    /// A certificate for `host` from `ca`, with a fresh key, as Secret contents.
    static func contents(from ca: IssuingCA, host: String) async throws -> TLSSecretContents {
        let (key, keyPEM) = try KeyAlgorithm.ecdsaP256.generate()
        let plan = try IssuanceRules.plan(
            IssuanceRequest(csrPEM: try Fixtures.csr(key: key, dnsNames: [host])),
            policy: try Fixtures.policy("*.example.com"), now: Date(), issuerNotAfter: ca.certificate.notValidAfter
        )
        let leaf = try await LeafCertificateFactory.issue(
            plan, by: ca, serial: SerialNumbers.random(),
            validity: LeafCertificateFactory.validity(for: .seconds(3600), now: Date()))
        return TLSSecretContents(
            chain: [leaf, ca.certificate], privateKeyPEM: keyPEM, root: ca.root, issuer: "\(ca.certificate.subject)",
            renewAfter: Date().addingTimeInterval(2400))
    }
}
