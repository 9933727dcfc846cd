import Foundation
import GRDB
import Logging
import SignetKeyVault
import SignetKeys
import Testing
import X509

/// Signet with its intermediate key in (the double of) Azure Key Vault.
@Suite("issuing with the CA key in Key Vault", .serialized)
struct KeyVaultIssuanceTests {
    /// Entra ID by client secret, pointed at the double.
    static func environment(_ double: KeyVaultDoubleProcess) -> [String: String] {
        [
            "AZURE_TENANT_ID": KeyVaultDoubleProcess.tenant, "AZURE_CLIENT_ID": "signet",
            "AZURE_CLIENT_SECRET": KeyVaultDoubleProcess.clientSecret,
            "AZURE_AUTHORITY_HOST": double.url,
        ]
    }

    static let p256: [String: any Sendable] = ["kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"]]

    /// Creates a key in the vault (P-256 unless told) and a CA directory whose intermediate certificate is for it.
    static func vaultBackedCA(
        _ double: KeyVaultDoubleProcess, keyName: String, directory: String, key: [String: any Sendable] = p256
    ) async throws -> String {
        try await KeyVaultConnection.with(
            vaultURL: double.url, caFile: double.caFile, environment: environment(double), logger: Logger(label: "test")
        ) { client in
            _ = try await client.createKey(name: keyName, parameters: key)
            let signer = try await KeyVaultSigner.connect(client: client, keyName: keyName, keyVersion: nil)
            try await CAInitializer().create(
                in: CADirectory(path: directory), overwrite: false, externalIntermediateKey: signer.privateKey.publicKey
            )
            return signer.keyID
        }
    }

    /// `signet serve` with the CA of `directory/ca`, its key `keyName` in the double; `authentication` is the
    /// Entra ID environment (client secret unless given), `extra` any further settings.
    static func vaultServer(
        _ double: KeyVaultDoubleProcess, directory: String, keyName: String,
        authentication: [String: String]? = nil, extra: [String: String] = [:]
    ) throws -> ServerProcess {
        try ServerProcess(
            dataDirectory: directory + "/data",
            environment: (authentication ?? environment(double)).merging(
                [
                    "SIGNET_CA_DIR": directory + "/ca", "SIGNET_KEYVAULT_URL": double.url,
                    "SIGNET_KEYVAULT_KEY": keyName,
                    "SIGNET_KEYVAULT_CA_FILE": double.caFile,
                ].merging(extra) { $1 }
            ) { $1 })
    }

    @Test(
        "issues through Key Vault: chains verify, each ledger row names the key version and the vault's request id; throttling and 5xx are retried"
    )
    func issuesThroughTheVault() async throws {
        let double = try KeyVaultDoubleProcess()
        defer { double.stop() }
        let directory = try Fixtures.temporaryDirectory("signet-kv")
        let kid = try await Self.vaultBackedCA(double, keyName: "signet-intermediate", directory: directory + "/ca")
        #expect(
            !FileManager.default.fileExists(atPath: directory + "/ca/intermediate.key"), "the key stays in the vault")

        let server = try Self.vaultServer(double, directory: directory, keyName: "signet-intermediate")
        defer { server.stop() }
        #expect(server.logText.contains("CA key in Azure Key Vault"))
        let token = try server.createToken(name: "kv", allow: ["*.example.com"])

        // Every third sign call is throttled (Retry-After: 0) and every fifth fails with 503 (never more than two
        // failures in a row, within the retry budget): all must still succeed.
        try double.setFaults(["throttle_every": 3, "retry_after": 0, "error_every": 5])
        var serials: [String] = []
        for index in 0..<6 {
            let out = directory + "/out\(index)"
            let issued = try server.signet([
                "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
                "--generate-key", "ecdsa-p256", "--dns", "kv\(index).example.com", "--out", out,
            ])
            #expect(issued.succeeded, "\(issued.error)\n\(server.logText)")
            let verify = try Tool.run(
                "openssl",
                ["verify", "-CAfile", out + "/ca.crt", "-untrusted", server.intermediateCertificate, out + "/tls.crt"])
            #expect(verify.succeeded, "\(verify.output)\(verify.error)")
            if let serial = issued.output.split(separator: "\n").first?.split(separator: " ").last {
                serials.append(String(serial))
            }
        }
        let stats = try double.stats()
        #expect(
            (stats["throttled"] as? Int ?? 0) >= 1 && (stats["errors_5xx"] as? Int ?? 0) >= 1,
            "throttling and 5xx were exercised: \(stats)")
        #expect(Set(serials).count == 6)
        let metrics = try server.metrics()
        #expect(
            metrics.contains(
                #"signet_signer_throttled_responses_total{backend="azure-key-vault"} \#(stats["throttled"] as? Int ?? -1)"#
            ), "\(metrics)")
        #expect(metrics.contains(#"signet_signer_retries_total{backend="azure-key-vault",reason="throttled"}"#))
        #expect(metrics.contains(#"signet_signer_retries_total{backend="azure-key-vault",reason="server_error"}"#))
        #expect(!metrics.contains("signet_signer_errors_total"), "every retry succeeded, so no signature failed")

        let ledger = try DatabaseQueue(path: directory + "/data/ledger.sqlite")
        let rows = try ledger.read { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT serial, signer_key_version, signer_request_id FROM certificates WHERE requester = 'token:kv'"
            )
        }
        #expect(rows.count == 6)
        for row in rows {
            #expect(row["signer_key_version"] as String? == kid)
            #expect((row["signer_request_id"] as String?)?.count == 36, "an x-ms-request-id (a UUID)")
        }
        // The CRL is signed in the vault like the certificates: openssl verifies it against the intermediate.
        let keyID = try Fixtures.subjectKeyIdentifier(ofCertificateAt: server.intermediateCertificate)
        let crl = directory + "/vault.crl"
        #expect(
            try Tool.run(
                "curl", ["-sf", "--cacert", server.rootCertificate, "-o", crl, server.url + "/crl/\(keyID).crl"]
            ).succeeded)
        let checked = try Tool.run(
            "openssl", ["crl", "-in", crl, "-inform", "DER", "-noout", "-CAfile", server.intermediateCertificate])
        #expect((checked.output + checked.error).contains("verify OK"), "\(checked.output)\(checked.error)")
        #expect(try server.metrics().contains("signet_crl_signatures_total"))
        // The OCSP responder's certificate is signed in the vault (once), its answers with its own local key.
        let asked = try Tool.run(
            "openssl",
            [
                "ocsp", "-issuer", server.intermediateCertificate, "-serial", "0x" + (try #require(serials.first)),
                "-url", server.url + "/ocsp", "-CAfile", server.rootCertificate,
            ])
        #expect(
            asked.succeeded && asked.error.contains("Response verify OK") && asked.output.contains(": good"),
            "\(asked.output)\(asked.error)")
        let shown = try server.signet([
            "certs", "show", try #require(serials.first), "--json", "--server", server.url, "--token", token,
            "--cacert", server.rootCertificate,
        ])
        #expect(
            shown.output.contains(#""signerKeyVersion":"\#(kid)""#) && shown.output.contains("signerRequestId"),
            "\(shown.output)")
    }

    @Test(
        "serving: an RSA vault key signs RS256 certificates; a pinned key version keeps signing after the key rotates; a current version that does not match the intermediate stops the start"
    )
    func servingKeyVersions() async throws {
        let double = try KeyVaultDoubleProcess()
        defer { double.stop() }
        let directory = try Fixtures.temporaryDirectory("signet-kv-versions")
        let kid = try await Self.vaultBackedCA(
            double, keyName: "rsa-ca", directory: directory + "/ca",
            key: ["kty": "RSA", "key_size": 3072, "key_ops": ["sign", "verify"]])
        let pinned = try #require(kid.split(separator: "/").last.map(String.init))

        // A new version of the key: the intermediate certificate is still for the old one.
        try await KeyVaultConnection.with(
            vaultURL: double.url, caFile: double.caFile, environment: Self.environment(double),
            logger: Logger(label: "test")
        ) { client in
            _ = try await client.createKey(
                name: "rsa-ca", parameters: ["kty": "RSA", "key_size": 3072, "key_ops": ["sign", "verify"]])
        }
        #expect(throws: ServerProcess.ServerFailed.self) {
            let unpinned = try Self.vaultServer(
                double, directory: directory + "/unpinned", keyName: "rsa-ca",
                extra: ["SIGNET_CA_DIR": directory + "/ca"])
            unpinned.stop()
        }
        let refusal = (try? String(contentsOfFile: directory + "/unpinned/data/serve.log", encoding: .utf8)) ?? ""
        #expect(
            refusal.contains("key check failed") && refusal.components(separatedBy: "SHA-256 ").count == 3,
            "both fingerprints: \(refusal)")

        let server = try Self.vaultServer(
            double, directory: directory, keyName: "rsa-ca", extra: ["SIGNET_KEYVAULT_KEY_VERSION": pinned])
        defer { server.stop() }
        let token = try server.createToken(name: "kv", allow: ["*.example.com"])
        let out = directory + "/out"
        let issued = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "rsa.example.com", "--out", out,
        ])
        #expect(issued.succeeded, "\(issued.error)\n\(server.logText)")
        let verify = try Tool.run(
            "openssl",
            ["verify", "-CAfile", out + "/ca.crt", "-untrusted", server.intermediateCertificate, out + "/tls.crt"])
        #expect(verify.succeeded, "\(verify.output)\(verify.error)")
        let text = try Tool.run("openssl", ["x509", "-in", out + "/tls.crt", "-noout", "-text"]).output
        #expect(text.contains("Signature Algorithm: sha256WithRSAEncryption"), "\(text)")
        let ledger = try DatabaseQueue(path: directory + "/data/ledger.sqlite")
        let versions = try await ledger.read { db in
            try String.fetchAll(db, sql: "SELECT signer_key_version FROM certificates WHERE requester = 'token:kv'")
        }
        #expect(versions == [kid], "signed by the pinned version, not the newer one")
    }

    @Test(
        "signet ca init --key-vault creates the key, has the CSR signed in the vault, and the CA serves; --csr-only writes the CSR"
    )
    func caInitWithKeyVault() throws {
        let double = try KeyVaultDoubleProcess()
        defer { double.stop() }
        let directory = try Fixtures.temporaryDirectory("signet-kv-init")
        let environment = Self.environment(double).merging(["SIGNET_KEYVAULT_CA_FILE": double.caFile]) { $1 }
        let created = try Tool.run(
            Fixtures.signetBinary,
            [
                "ca", "init", "--dir", directory + "/ca", "--org", "Vault Corp",
                "--key-vault", double.url, "--key-name", "vault-ca", "--create-key", "ec-p384",
            ], environment: environment)
        #expect(created.succeeded, "\(created.error)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/ca/intermediate.key"))
        let text = try Tool.run("openssl", ["x509", "-in", directory + "/ca/intermediate.crt", "-noout", "-text"])
            .output
        #expect(text.contains("NIST CURVE: P-384") && text.contains("Vault Corp Intermediate CA"))

        let server = try Self.vaultServer(double, directory: directory, keyName: "vault-ca")
        defer { server.stop() }
        let token = try server.createToken(name: "kv", allow: ["*.example.com"])
        let out = directory + "/out"
        let issued = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "p384.example.com", "--out", out,
        ])
        #expect(issued.succeeded, "\(issued.error)")
        let verify = try Tool.run(
            "openssl",
            ["verify", "-CAfile", out + "/ca.crt", "-untrusted", server.intermediateCertificate, out + "/tls.crt"])
        #expect(verify.succeeded, "\(verify.output)\(verify.error)")

        let csrOnly = try Tool.run(
            Fixtures.signetBinary,
            [
                "ca", "init", "--dir", directory + "/external", "--key-vault", double.url,
                "--key-name", "external-ca", "--create-key", "rsa-3072", "--csr-only",
            ], environment: environment)
        #expect(csrOnly.succeeded, "\(csrOnly.error)")
        let checked = try Tool.run(
            "openssl", ["req", "-in", directory + "/external/intermediate.csr", "-verify", "-noout"])
        #expect(
            checked.succeeded && (checked.output + checked.error).contains("verify OK"),
            "\(checked.output)\(checked.error)")

        // Adopting the vault-backed intermediate elsewhere: checked against the vault's key, no key file copied;
        // a different vault key is refused by the key check.
        let imported = try Tool.run(
            Fixtures.signetBinary,
            [
                "ca", "import", "--cert", directory + "/ca/intermediate.crt", "--root", directory + "/ca/root.crt",
                "--key-vault", double.url, "--key-name", "vault-ca", "--dir", directory + "/imported",
            ], environment: environment)
        #expect(imported.succeeded, "\(imported.error)")
        #expect(
            FileManager.default.fileExists(atPath: directory + "/imported/intermediate.crt")
                && !FileManager.default.fileExists(atPath: directory + "/imported/intermediate.key"))
        let mismatched = try Tool.run(
            Fixtures.signetBinary,
            [
                "ca", "import", "--cert", directory + "/ca/intermediate.crt", "--root", directory + "/ca/root.crt",
                "--key-vault", double.url, "--key-name", "external-ca", "--dir", directory + "/mismatch",
            ], environment: environment)
        #expect(!mismatched.succeeded && mismatched.error.contains("key check failed"), "\(mismatched.error)")
    }

    @Test(
        "admission control: the sign rate stays within the configured limit, and a full queue answers 503 with Retry-After"
    )
    func admissionControl() async throws {
        let double = try KeyVaultDoubleProcess()
        defer { double.stop() }
        let directory = try Fixtures.temporaryDirectory("signet-kv-admission")
        _ = try await Self.vaultBackedCA(double, keyName: "ca", directory: directory + "/ca")
        let server = try Self.vaultServer(
            double, directory: directory, keyName: "ca",
            extra: [
                "SIGNET_KEYVAULT_MAX_SIGNS_PER_SECOND": "20", "SIGNET_KEYVAULT_MAX_CONCURRENT_SIGNS": "2",
                "SIGNET_KEYVAULT_MAX_QUEUED_SIGNS": "6",
            ])
        defer { server.stop() }
        let token = try server.createToken(name: "kv", allow: ["*.example.com"])
        try JSONSerialization.data(withJSONObject: ["csr": try Fixtures.csr(dnsNames: ["rate.example.com"])])
            .write(to: URL(fileURLWithPath: directory + "/body.json"))
        let signsBefore = try double.stats()["sign_ok"] as? Int ?? 0
        try double.setFaults(["latency_ms": 300])

        // 16 requests at once, as 16 curl processes: 2 signing, 6 waiting, the rest refused at once.
        let started = Date()
        let clients = try (0..<16).map { index in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try Tool.which("curl"))
            process.arguments = [
                "-s", "-i", "--max-time", "20", "--cacert", server.rootCertificate, "-o",
                directory + "/answer-\(index)",
                "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                "--data-binary", "@" + directory + "/body.json", server.url + "/v1/certificates",
            ]
            try process.run()
            return process
        }
        for client in clients { client.waitUntilExit() }
        let elapsed = Date().timeIntervalSince(started)
        let answers = try (0..<16).map { try String(contentsOfFile: directory + "/answer-\($0)", encoding: .utf8) }
        let issued = answers.filter { $0.hasPrefix("HTTP/1.1 201") }
        let busy = answers.filter { $0.hasPrefix("HTTP/1.1 503") }
        #expect(issued.count + busy.count == 16, "\(answers.map { $0.prefix(40) })")
        #expect(issued.count >= 8 && !busy.isEmpty, "issued \(issued.count), refused \(busy.count)")
        #expect(busy.allSatisfy { $0.contains("Retry-After:") && $0.contains("signer-busy") })
        let metrics = try server.metrics()
        #expect(
            metrics.contains(
                #"signet_signer_errors_total{backend="azure-key-vault",kind="queue_full"} \#(busy.count)"#),
            "\(metrics)")
        #expect(
            metrics.contains(#"signet_signer_queue_depth{backend="azure-key-vault"} 0"#)
                && metrics.contains(#"signet_signer_in_flight{backend="azure-key-vault"} 0"#))
        let stats = try double.stats()
        #expect(
            stats["sign_in_flight_max"] as? Int == 2, "never more than the concurrency limit inside the vault: \(stats)"
        )
        let signs = (stats["sign_ok"] as? Int ?? 0) - signsBefore
        #expect(
            signs == issued.count,
            "every answer with a certificate is one signature; refused requests never reached the vault")
        // The first two start at once (the burst), the rest at no more than 20 per second.
        #expect(elapsed >= Double(signs - 2) / 20 * 0.9, "\(signs) signatures in \(elapsed) s")

        let ledger = try DatabaseQueue(path: directory + "/data/ledger.sqlite")
        let recorded = try await ledger.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM certificates WHERE requester = 'token:kv'")
        }
        #expect(recorded == issued.count)
    }

    @Test(
        "each Entra ID flow gets a token from the environment it is given",
        arguments: ["client_secret", "client_assertion", "managed_identity"])
    func authenticationFlows(_ flow: String) async throws {
        let double = try KeyVaultDoubleProcess()
        defer { double.stop() }
        let directory = try Fixtures.temporaryDirectory("signet-kv-auth")
        _ = try await Self.vaultBackedCA(double, keyName: "ca", directory: directory + "/ca")
        var environment = ["AZURE_AUTHORITY_HOST": double.url]
        switch flow {
        case "client_secret":
            environment = Self.environment(double)
        case "client_assertion":
            // A projected service-account token as AKS writes it: a JWT in a file, signed by the cluster's issuer.
            try double.federatedToken().write(to: directory + "/token")
            environment.merge([
                "AZURE_TENANT_ID": KeyVaultDoubleProcess.tenant, "AZURE_CLIENT_ID": "signet",
                "AZURE_FEDERATED_TOKEN_FILE": directory + "/token",
            ]) { $1 }
        default:
            environment["AZURE_IMDS_ENDPOINT"] = double.url + "/metadata/identity/oauth2/token"
        }
        let server = try Self.vaultServer(double, directory: directory, keyName: "ca", authentication: environment)
        defer { server.stop() }
        let token = try server.createToken(name: "kv", allow: ["*.example.com"])
        let issued = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "\(flow.replacingOccurrences(of: "_", with: "-")).example.com",
            "--out", directory + "/out",
        ])
        #expect(issued.succeeded, "\(issued.error)\n\(server.logText)")
        let requests = try double.stats()["token_requests"] as? [String: Int] ?? [:]
        #expect((requests[flow] ?? 0) >= 1, "\(requests)")
    }

    @Test(
        "Entra ID and Key Vault refuse what the real services refuse: a forged or foreign assertion, another client id; expired tokens are renewed, a challenge to another tenant is followed, a wrong signature never leaves Signet"
    )
    func vaultStrictness() async throws {
        let double = try KeyVaultDoubleProcess()
        defer { double.stop() }
        let directory = try Fixtures.temporaryDirectory("signet-kv-strict")
        _ = try await Self.vaultBackedCA(double, keyName: "ca", directory: directory + "/ca")
        func federated(_ token: String) throws -> [String: String] {
            let file = directory + "/token-\(UUID().uuidString)"
            try token.write(to: file)
            return [
                "AZURE_AUTHORITY_HOST": double.url, "AZURE_TENANT_ID": KeyVaultDoubleProcess.tenant,
                "AZURE_CLIENT_ID": "signet",
                "AZURE_FEDERATED_TOKEN_FILE": file,
            ]
        }
        for (name, authentication, code) in [
            ("forged", try federated(try double.federatedToken(forged: true)), "AADSTS50027"),
            (
                "another subject",
                try federated(try double.federatedToken(subject: "system:serviceaccount:team-a:web")), "AADSTS70021"
            ),
            ("another audience", try federated(try double.federatedToken(audience: "signet")), "AADSTS700212"),
            (
                "another client", Self.environment(double).merging(["AZURE_CLIENT_ID": "someone-else"]) { $1 },
                "AADSTS700016"
            ),
        ] {
            #expect(
                "\(name)",
                performing: {
                    _ = try Self.vaultServer(
                        double, directory: directory + "/\(name.replacingOccurrences(of: " ", with: "-"))",
                        keyName: "ca", authentication: authentication, extra: ["SIGNET_CA_DIR": directory + "/ca"])
                },
                throws: { "\($0)".contains(code) })
        }
        #expect(try double.stats()["refused_assertions"] as? Int ?? 0 >= 3)

        let server = try Self.vaultServer(
            double, directory: directory, keyName: "ca", authentication: try federated(try double.federatedToken()))
        defer { server.stop() }
        let token = try server.createToken(name: "kv", allow: ["*.example.com"])
        func issue(_ host: String) throws -> Tool.Result {
            try server.signet([
                "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
                "--generate-key", "ecdsa-p256", "--dns", host, "--out", directory + "/" + host,
            ])
        }
        #expect(try issue("first.example.com").succeeded)

        // Tokens expire under Signet: the 401 is answered with a new token, once.
        let before = try double.stats()
        try double.expireTokens()
        #expect(try issue("after-expiry.example.com").succeeded)
        let after = try double.stats()
        #expect(
            (after["expired_tokens"] as? Int ?? 0) >= 1
                && (after["tokens"] as? Int ?? 0) == (before["tokens"] as? Int ?? 0) + 1, "\(after)")

        // The vault challenges to another tenant: Signet follows the challenge and gets a token there.
        let other = "00000000-0000-0000-0000-0000000000aa"
        try double.setFaults(["challenge_tenant": other])
        #expect(try issue("other-tenant.example.com").succeeded, "\(server.logText.suffix(1500))")
        #expect(((try double.stats()["token_tenants"] as? [String: Int]) ?? [:])[other] ?? 0 >= 1)
        try double.setFaults(["challenge_tenant": NSNull()])

        // A signature of something else: verified before use, so the issuance fails and nothing is recorded.
        try double.setFaults(["wrong_signature": true])
        let wrong = try issue("wrong.example.com")
        #expect(!wrong.succeeded && wrong.error.contains("503"), "\(wrong.error)")
        #expect((try double.stats()["wrong_signatures"] as? Int ?? 0) >= 1)
        #expect(
            try server.metrics().contains(
                #"signet_signer_errors_total{backend="azure-key-vault",kind="wrong_signature"}"#))
        try double.setFaults(["wrong_signature": false])
        let ledger = try DatabaseQueue(path: directory + "/data/ledger.sqlite")
        let names = try await ledger.read { db in
            try String.fetchAll(db, sql: "SELECT dns_names FROM certificates WHERE requester = 'token:kv'")
        }
        #expect(!names.contains(#"["wrong.example.com"]"#) && names.count == 3, "\(names)")
    }

    @Test("a flood of unauthenticated /readyz and /metrics requests costs at most one Key Vault call per period")
    func probesAreCached() async throws {
        let double = try KeyVaultDoubleProcess()
        defer { double.stop() }
        let directory = try Fixtures.temporaryDirectory("signet-kv-probes")
        _ = try await Self.vaultBackedCA(double, keyName: "ca", directory: directory + "/ca")
        let server = try Self.vaultServer(
            double, directory: directory, keyName: "ca", extra: ["SIGNET_LIMIT_PROBE_CACHE_SECONDS": "2"])
        defer { server.stop() }
        let before = try double.stats()["get_key"] as? Int ?? 0
        let started = Date()
        let urls =
            Array(repeating: server.url + "/readyz", count: 100) + Array(repeating: server.url + "/metrics", count: 100)
        let flood = try Tool.run(
            "curl",
            [
                "-s", "-Z", "--parallel-max", "25", "--max-time", "20", "--cacert", server.rootCertificate,
                "-w", "%{http_code}\n",
            ] + urls)
        let elapsed = Date().timeIntervalSince(started)
        #expect(
            flood.output.components(separatedBy: "\n").filter { $0.hasSuffix("200") }.count >= 200,
            "\(flood.output.suffix(500))")
        let calls = (try double.stats()["get_key"] as? Int ?? 0) - before
        // One look per started period of two seconds, however many requests arrived in it.
        #expect(calls >= 1 && calls <= 1 + Int(elapsed / 2), "\(calls) getKey calls in \(elapsed) s for 200 probes")
    }

    @Test(
        "while the vault is down, issuance fails fast with a clear problem and nothing reaches the ledger; it resumes when the vault returns"
    )
    func vaultDown() async throws {
        let double = try KeyVaultDoubleProcess()
        defer { double.stop() }
        let directory = try Fixtures.temporaryDirectory("signet-kv-down")
        _ = try await Self.vaultBackedCA(double, keyName: "ca", directory: directory + "/ca")
        let server = try Self.vaultServer(double, directory: directory, keyName: "ca")
        defer { server.stop() }
        let token = try server.createToken(name: "kv", allow: ["*.example.com"])
        try double.setFaults(["down": true])
        let started = Date()
        let refused = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "down.example.com", "--out", directory + "/down",
        ])
        #expect(!refused.succeeded)
        #expect(refused.error.contains("503") && refused.error.contains("Key Vault"), "\(refused.error)")
        #expect(Date().timeIntervalSince(started) < 20, "bounded retries, not a hang")
        let ready = try Tool.run(
            "curl",
            [
                "-s", "--max-time", "10", "--cacert", server.rootCertificate, "-w", "\n%{http_code}",
                server.url + "/readyz",
            ])
        #expect(
            ready.output.hasSuffix("503") && ready.output.contains("Key Vault"),
            "/readyz says the vault is failing: \(ready.output)")
        let metrics = try server.metrics()
        #expect(
            metrics.contains(#"signet_signer_errors_total{backend="azure-key-vault",kind="unreachable"} 1"#),
            "\(metrics)")
        #expect(metrics.contains(#"signet_signer_retries_total{backend="azure-key-vault",reason="transport"}"#))
        // The problem says what the caller can act on and carries the request id; the vault's own error (its
        // address, the connection failure) goes only to the log, under that id.
        let body = String(
            decoding: try JSONSerialization.data(withJSONObject: [
                "csr": try Fixtures.csr(), "dnsNames": ["down.example.com"],
            ]), as: UTF8.self)
        let answer = try Tool.run(
            "curl",
            [
                "-s", "--max-time", "30", "--cacert", server.rootCertificate, "-H", "Authorization: Bearer \(token)",
                "-H", "Content-Type: application/json", "--data-binary", "@-", server.url + "/v1/certificates",
            ], input: body)
        let problem = try JSONSerialization.jsonObject(with: Data(answer.output.utf8)) as? [String: Any] ?? [:]
        let detail = problem["detail"] as? String ?? ""
        let requestID = try #require(problem["requestId"] as? String)
        #expect(problem["status"] as? Int == 503 && detail.contains("Azure Key Vault"), "\(problem)")
        #expect(
            !detail.contains("127.0.0.1") && !detail.contains(String(double.port))
                && !answer.output.contains("onnection"), "\(problem)")
        #expect(server.logText.contains("requestId=\(requestID)"), "\(server.logText.suffix(2000))")

        try double.setFaults(["down": false])
        let resumed = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "up.example.com", "--out", directory + "/up",
        ])
        #expect(resumed.succeeded, "\(resumed.error)")
        let ledger = try DatabaseQueue(path: directory + "/data/ledger.sqlite")
        let names = try await ledger.read { db in
            try String.fetchAll(db, sql: "SELECT dns_names FROM certificates WHERE requester = 'token:kv'")
        }
        #expect(names == [#"["up.example.com"]"#])
    }
}
