import Foundation
import GRDB
import SignetAuthority
import SignetKeys
import SignetPKCS11
import Testing
import X509

/// The intermediate's key on a PKCS#11 token (SoftHSM2, a real PKCS#11 implementation).
@Suite("the CA key on a PKCS#11 token (SoftHSM2)", .serialized)
struct PKCS11Tests {
    static func signer(label: String? = nil, id: String? = nil, sessions: Int = 2) async throws -> PKCS11Signer {
        _ = try SoftHSMToken.shared()
        return try await PKCS11Signer.connect(
            module: SoftHSMToken.module,
            key: PKCS11KeyReference(
                tokenLabel: SoftHSMToken.label, keyLabel: label, keyID: id.flatMap(PKCS11KeyReference.keyID(hex:))),
            pin: Array(SoftHSMToken.pin.utf8), sessions: sessions
        )
    }

    @Test(
        "each token key type (by label or by id) signs an intermediate and leaf certificates that openssl verifies; the receipt names the key",
        arguments: [
            ("ec-p256", nil), (nil, "02"), ("rsa-2048", nil),
        ] as [(String?, String?)])
    func tokenKeysSignChains(_ label: String?, _ id: String?) async throws {
        let signer = try await Self.signer(label: label, id: id)
        let directory = CADirectory(path: try Fixtures.temporaryDirectory("signet-p11-ca"))
        try await CAInitializer().create(
            in: directory, overwrite: false, externalIntermediateKey: signer.privateKey.publicKey)
        #expect(!FileManager.default.fileExists(atPath: directory.key), "the key stays on the token")
        let ca = try await CALoader.load(from: directory, signer: signer)

        let plan = try IssuanceRules.plan(
            IssuanceRequest(csrPEM: try Fixtures.csr(dnsNames: ["hsm.example.com"])),
            policy: try Fixtures.policy("*.example.com"), now: Date(), issuerNotAfter: ca.certificate.notValidAfter
        )
        let receipt = SignatureReceipt()
        let leaf = try await SignatureReceipt.$current.withValue(receipt) {
            try await LeafCertificateFactory.issue(
                plan, by: ca, serial: SerialNumbers.random(),
                validity: LeafCertificateFactory.validity(for: .seconds(3600), now: Date()))
        }
        #expect(receipt.recorded.keyVersion == signer.reference.uri)
        #expect(signer.reference.uri.hasPrefix("pkcs11:token=signet-test;"))
        #expect(!signer.keyIsExportable, "pkcs11-tool generates sensitive, non-extractable keys")
        let path = directory.path + "/leaf.crt"
        try PEMFiles.pem([leaf]).write(to: path)
        let verify = try Tool.run(
            "openssl",
            [
                "verify", "-CAfile", directory.rootCertificate, "-untrusted", directory.certificate, "-purpose",
                "sslserver", path,
            ])
        #expect(verify.succeeded, "\(signer.reference.uri): \(verify.output)\(verify.error)")
        #expect(
            try await CRLCheck.signAndVerify(ca, revoking: leaf, issuerPath: directory.certificate) != nil,
            "the token signs CRLs too")
    }

    @Test("concurrent signatures share a bounded pool of sessions; every one verifies")
    func concurrentSignatures() async throws {
        let signer = try await Self.signer(label: "ec-p256", sessions: 3)
        let key = signer.privateKey
        let signatures = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<48 {
                group.addTask {
                    let message = Array("tbs-\(index)".utf8)
                    let signature = try await key.signAsynchronously(
                        bytes: message, signatureAlgorithm: .ecdsaWithSHA256)
                    return key.publicKey.isValidSignature(
                        signature.rawRepresentation, for: message, signatureAlgorithm: .ecdsaWithSHA256)
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(signatures.count == 48 && signatures.allSatisfy { $0 })
    }

    @Test(
        "signet ca init with a token key, then signet serve issues through it: chains verify, ledger rows name the key, metrics name the backend"
    )
    func caInitAndServe() async throws {
        let token = try SoftHSMToken.shared()
        let directory = try Fixtures.temporaryDirectory("signet-p11-serve")
        let keyOptions = [
            "--pkcs11-module", SoftHSMToken.module, "--token-label", SoftHSMToken.label, "--pin-env", "SIGNET_TEST_PIN",
        ]
        let created = try Tool.run(
            Fixtures.signetBinary,
            ["ca", "init", "--dir", directory + "/ca", "--org", "HSM Corp", "--key-label", "ec-p384"] + keyOptions,
            environment: token.environment)
        #expect(created.succeeded, "\(created.error)")
        #expect(created.output.contains("SIGNET_PKCS11_KEY_LABEL=ec-p384"), "tells how to serve: \(created.output)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/ca/intermediate.key"))
        let text = try Tool.run("openssl", ["x509", "-in", directory + "/ca/intermediate.crt", "-noout", "-text"])
            .output
        #expect(text.contains("NIST CURVE: P-384") && text.contains("HSM Corp Intermediate CA"))

        let server = try ServerProcess(
            dataDirectory: directory + "/data",
            environment: token.environment.merging([
                "SIGNET_CA_DIR": directory + "/ca", "SIGNET_PKCS11_MODULE": SoftHSMToken.module,
                "SIGNET_PKCS11_TOKEN": SoftHSMToken.label,
                "SIGNET_PKCS11_KEY_LABEL": "ec-p384", "SIGNET_PKCS11_PIN_ENV": "SIGNET_TEST_PIN",
            ]) { $1 })
        defer { server.stop() }
        #expect(server.logText.contains("CA key on a PKCS#11 token"))
        let apiToken = try server.createToken(name: "hsm", allow: ["*.example.com"])
        for index in 0..<3 {
            let out = directory + "/out\(index)"
            let issued = try server.signet([
                "issue", "--server", server.url, "--token", apiToken, "--cacert", server.rootCertificate,
                "--generate-key", index == 2 ? "rsa-2048" : "ecdsa-p256", "--dns", "hsm\(index).example.com", "--out",
                out,
            ])
            #expect(issued.succeeded, "\(issued.error)\n\(server.logText)")
            let verify = try Tool.run(
                "openssl",
                ["verify", "-CAfile", out + "/ca.crt", "-untrusted", server.intermediateCertificate, out + "/tls.crt"])
            #expect(verify.succeeded, "\(verify.output)\(verify.error)")
        }
        let ledger = try DatabaseQueue(path: directory + "/data/ledger.sqlite")
        let keys = try await ledger.read { db in
            try String.fetchAll(db, sql: "SELECT signer_key_version FROM certificates WHERE requester = 'token:hsm'")
        }
        #expect(keys == Array(repeating: "pkcs11:token=signet-test;object=ec-p384", count: 3))
        let ready = try Tool.run(
            "curl",
            [
                "-s", "--max-time", "10", "--cacert", server.rootCertificate, "-w", "\n%{http_code}",
                server.url + "/readyz",
            ])
        #expect(ready.output.hasSuffix("200"), "\(ready.output)")
        let metrics = try Tool.run(
            "curl", ["-s", "--max-time", "10", "--cacert", server.rootCertificate, server.url + "/metrics"]
        ).output
        #expect(metrics.contains(#"signet_signer_duration_seconds_count{backend="pkcs11"}"#), "\(metrics)")
        #expect(metrics.contains(#"signet_signer_in_flight{backend="pkcs11"} 0"#), "\(metrics)")
    }

    @Test("ca import checks the token key against the certificate; --csr-only writes a CSR signed on the token")
    func importAndCSR() async throws {
        let token = try SoftHSMToken.shared()
        let directory = try Fixtures.temporaryDirectory("signet-p11-import")
        let keyOptions = [
            "--pkcs11-module", SoftHSMToken.module, "--token-label", SoftHSMToken.label, "--pin-env", "SIGNET_TEST_PIN",
        ]
        let created = try Tool.run(
            Fixtures.signetBinary, ["ca", "init", "--dir", directory + "/ca", "--key-id", "01"] + keyOptions,
            environment: token.environment)
        #expect(created.succeeded, "\(created.error)")
        func importCA(_ key: [String], into name: String) throws -> Tool.Result {
            try Tool.run(
                Fixtures.signetBinary,
                [
                    "ca", "import", "--cert", directory + "/ca/intermediate.crt", "--root", directory + "/ca/root.crt",
                    "--dir", directory + "/" + name,
                ] + key + keyOptions, environment: token.environment)
        }
        let matching = try importCA(["--key-label", "ec-p256"], into: "imported")
        #expect(matching.succeeded, "\(matching.error)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/imported/intermediate.key"))
        let other = try importCA(["--key-label", "other-p256"], into: "mismatch")
        #expect(
            !other.succeeded && other.error.contains("key check failed")
                && other.error.components(separatedBy: "SHA-256 ").count == 3, "\(other.error)")

        let csr = try Tool.run(
            Fixtures.signetBinary,
            ["ca", "init", "--dir", directory + "/external", "--key-label", "rsa-2048", "--csr-only"] + keyOptions,
            environment: token.environment)
        #expect(csr.succeeded, "\(csr.error)")
        let checked = try Tool.run(
            "openssl", ["req", "-in", directory + "/external/intermediate.csr", "-verify", "-noout"])
        #expect(
            checked.succeeded && (checked.output + checked.error).contains("verify OK"),
            "\(checked.output)\(checked.error)")
    }

    @Test(
        "mistakes get clear errors: wrong PIN, unknown token, missing key, not a PKCS#11 library",
        arguments: [
            (
                ["--token-label", "signet-test", "--key-label", "ec-p256", "--pin-env", "WRONG_PIN"],
                "CKR_PIN_INCORRECT"
            ),
            (
                ["--token-label", "no-such-token", "--key-label", "ec-p256", "--pin-env", "SIGNET_TEST_PIN"],
                "no token labelled 'no-such-token'"
            ),
            (
                ["--token-label", "signet-test", "--key-label", "absent", "--pin-env", "SIGNET_TEST_PIN"],
                "no private key pkcs11:token=signet-test;object=absent"
            ),
        ])
    func clearErrors(_ options: [String], _ expected: String) throws {
        let token = try SoftHSMToken.shared()
        let directory = try Fixtures.temporaryDirectory("signet-p11-errors")
        let result = try Tool.run(
            Fixtures.signetBinary,
            ["ca", "init", "--dir", directory + "/ca", "--pkcs11-module", SoftHSMToken.module] + options,
            environment: token.environment.merging(["WRONG_PIN": "9999"]) { $1 })
        #expect(!result.succeeded && result.error.contains(expected), "\(result.error)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/ca/intermediate.crt"), "nothing written")
    }

    @Test("a library that is not a PKCS#11 module is refused by name")
    func notAModule() async throws {
        await #expect(throws: PKCS11Error.self) {
            _ = try await PKCS11Signer.connect(
                module: "libm.so.6", key: .init(tokenLabel: "x", keyLabel: "y", keyID: nil), pin: [], sessions: 1)
        }
        do {
            _ = try await PKCS11Signer.connect(
                module: "/nonexistent/libpkcs11.so", key: .init(tokenLabel: "x", keyLabel: "y", keyID: nil), pin: [],
                sessions: 1)
            Issue.record("loading a missing library succeeded")
        } catch {
            #expect("\(error)".contains("cannot load /nonexistent/libpkcs11.so"))
        }
    }
}
