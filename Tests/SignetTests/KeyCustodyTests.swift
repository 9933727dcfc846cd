import Crypto
import Foundation
import SignetAuthority
import SignetKeys
import SwiftASN1
import Testing
import X509

@Suite("CA keys and CA material")
struct KeyCustodyTests {
    @Test("reads PKCS#8, SEC1, PKCS#1 and encrypted PKCS#8 keys written by openssl")
    func keyFormats() throws {
        let directory = try Fixtures.temporaryDirectory()
        try Tool.run(
            "openssl",
            ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", directory + "/ec-pkcs8.pem"])
        try Tool.run("openssl", ["ec", "-in", directory + "/ec-pkcs8.pem", "-out", directory + "/ec-sec1.pem"])
        try Tool.run(
            "openssl",
            ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", directory + "/rsa-pkcs8.pem"])
        try Tool.run(
            "openssl",
            ["rsa", "-in", directory + "/rsa-pkcs8.pem", "-traditional", "-out", directory + "/rsa-pkcs1.pem"])
        for (cipher, prf) in [("aes-256-cbc", "hmacWithSHA256"), ("aes-128-cbc", "hmacWithSHA1")] {
            let made = try Tool.run(
                "openssl",
                [
                    "pkcs8", "-topk8", "-v2", cipher, "-v2prf", prf, "-in", directory + "/ec-pkcs8.pem",
                    "-out", directory + "/ec-\(cipher).pem", "-passout", "pass:correct horse",
                ])
            #expect(made.succeeded, "\(made.error)")
        }

        let plain = try PrivateKeyPEM.read(try String(contentsOfFile: directory + "/ec-pkcs8.pem", encoding: .utf8))
        #expect(
            try PrivateKeyPEM.read(try String(contentsOfFile: directory + "/ec-sec1.pem", encoding: .utf8)) == plain)
        #expect(
            try String(contentsOfFile: directory + "/ec-sec1.pem", encoding: .utf8).contains("BEGIN EC PRIVATE KEY"))
        let rsa = try PrivateKeyPEM.read(try String(contentsOfFile: directory + "/rsa-pkcs8.pem", encoding: .utf8))
        let pkcs1 = try String(contentsOfFile: directory + "/rsa-pkcs1.pem", encoding: .utf8)
        #expect(pkcs1.contains("BEGIN RSA PRIVATE KEY"))
        #expect(try PrivateKeyPEM.read(pkcs1) == rsa)
        for cipher in ["aes-256-cbc", "aes-128-cbc"] {
            let encrypted = try String(contentsOfFile: directory + "/ec-\(cipher).pem", encoding: .utf8)
            #expect(PrivateKeyPEM.isEncrypted(encrypted))
            #expect(try PrivateKeyPEM.read(encrypted, passphrase: Array("correct horse".utf8)) == plain)
            #expect(throws: KeyError.passphraseRequired) { try PrivateKeyPEM.read(encrypted) }
            #expect(throws: KeyError.wrongPassphrase) {
                try PrivateKeyPEM.read(encrypted, passphrase: Array("wrong".utf8))
            }
        }
    }

    @Test("refuses what is not a private key")
    func notAKey() async throws {
        #expect(throws: KeyError.notPEM) { try PrivateKeyPEM.read("nonsense") }
        let (ca, _) = try await Fixtures.issuingCA()
        #expect(throws: KeyError.wrongPEMType("CERTIFICATE")) {
            try PrivateKeyPEM.read(try ca.certificate.serializeAsPEM().pemString)
        }
    }

    @Test(
        "ca init writes a verifiable root and intermediate, keys 0600, and refuses to overwrite without force",
        arguments: KeyAlgorithm.allCases.filter { $0 != .ed25519 && $0 != .rsa4096 })
    func caInit(_ algorithm: KeyAlgorithm) async throws {
        let path = try Fixtures.temporaryDirectory()
        let (ca, directory) = try await Fixtures.issuingCA(keyAlgorithm: algorithm, directory: path + "/ca")
        for key in [directory.key, directory.rootKey] {
            let mode = try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int
            #expect(mode == 0o600)
        }
        let verified = try Tool.run("openssl", ["verify", "-CAfile", directory.rootCertificate, directory.certificate])
        #expect(verified.succeeded, "\(verified.output) \(verified.error)")
        let text = try Tool.run("openssl", ["x509", "-in", directory.certificate, "-noout", "-text"]).output
        #expect(text.contains("CA:TRUE, pathlen:0"))
        #expect(text.contains("Certificate Sign"))
        #expect(ca.certificate.subject.description.contains("Signet Test Intermediate CA"))

        let before = try String(contentsOfFile: directory.key, encoding: .utf8)
        await #expect(throws: CAFileError.self) { try await CAInitializer().create(in: directory, overwrite: false) }
        #expect(try String(contentsOfFile: directory.key, encoding: .utf8) == before)
        try await CAInitializer().create(in: directory, overwrite: true)
        #expect(try String(contentsOfFile: directory.key, encoding: .utf8) != before)
    }

    @Test("ca init can encrypt its keys, and they load with the passphrase")
    func encryptedInit() async throws {
        let directory = CADirectory(path: try Fixtures.temporaryDirectory() + "/ca")
        var initializer = CAInitializer()
        initializer.passphrase = Array("s3cret".utf8)
        try await initializer.create(in: directory, overwrite: false)
        let pem = try String(contentsOfFile: directory.key, encoding: .utf8)
        #expect(pem.contains("BEGIN ENCRYPTED PRIVATE KEY"))
        let opened = try Tool.run("openssl", ["pkey", "-in", directory.key, "-passin", "pass:s3cret", "-noout"])
        #expect(opened.succeeded, "openssl cannot read the encrypted key: \(opened.error)")
        let signer = try FileKeySigner(path: directory.key, passphrase: Array("s3cret".utf8))
        _ = try await CALoader.load(from: directory, signer: signer)
    }

    @Test("ca import adopts a sound intermediate and names the failing check otherwise")
    func importChecks() async throws {
        let (good, goodDirectory) = try await Fixtures.issuingCA()
        let (_, otherDirectory) = try await Fixtures.issuingCA()
        let target = CADirectory(path: try Fixtures.temporaryDirectory() + "/imported")

        func attempt(cert: String, key: String, root: String) async -> String? {
            do {
                try await CAImporter.importCA(
                    certificatePath: cert, key: .file(path: key, passphrase: nil), rootPath: root, chainPath: nil,
                    into: target, overwrite: true)
                return nil
            } catch {
                return String(describing: error)
            }
        }

        #expect(
            await attempt(
                cert: goodDirectory.certificate, key: otherDirectory.key, root: goodDirectory.rootCertificate)?
                .hasPrefix("key check failed") == true)
        #expect(
            await attempt(
                cert: goodDirectory.certificate, key: goodDirectory.key, root: otherDirectory.rootCertificate)?
                .hasPrefix("chain check failed") == true)

        // A leaf is not a CA.
        let leafDirectory = try Fixtures.temporaryDirectory()
        let leafKey = P256.Signing.PrivateKey()
        let plan = try IssuanceRules.plan(
            IssuanceRequest(csrPEM: try Fixtures.csr(key: .init(leafKey), dnsNames: ["a.example.com"])),
            policy: try Fixtures.policy("*.example.com"), now: Date(), issuerNotAfter: good.certificate.notValidAfter
        )
        let leaf = try await LeafCertificateFactory.issue(
            plan, by: good, serial: SerialNumbers.random(),
            validity: LeafCertificateFactory.validity(for: .seconds(3600), now: Date()))
        try PEMFiles.pem([leaf]).write(to: leafDirectory + "/leaf.crt")
        try leafKey.pemRepresentation.write(to: leafDirectory + "/leaf.key")
        #expect(
            await attempt(
                cert: leafDirectory + "/leaf.crt", key: leafDirectory + "/leaf.key", root: goodDirectory.rootCertificate
            )?.hasPrefix("CA check failed") == true)

        // An expired intermediate, signed by the right root.
        let expiredDirectory = try Fixtures.temporaryDirectory()
        var initializer = CAInitializer()
        initializer.intermediateLifetime = .seconds(3600)
        let expiredCA = CADirectory(path: expiredDirectory)
        try await initializer.create(in: expiredCA, overwrite: false, now: Date().addingTimeInterval(-7200))
        #expect(
            await attempt(cert: expiredCA.certificate, key: expiredCA.key, root: expiredCA.rootCertificate)?.hasPrefix(
                "validity check failed") == true)

        #expect(
            await attempt(cert: goodDirectory.certificate, key: goodDirectory.key, root: goodDirectory.rootCertificate)
                == nil)
        #expect(FileManager.default.fileExists(atPath: target.key))
    }

    @Test("serial numbers are positive, 20 octets, and do not repeat")
    func serials() {
        var seen = Set<String>()
        for _ in 0..<10_000 {
            let serial = SerialNumbers.random()
            #expect(serial.bytes.count == 20)
            #expect(serial.bytes.first! & 0x80 == 0)
            seen.insert(SerialNumbers.hex(serial))
        }
        #expect(seen.count == 10_000)
    }
}
