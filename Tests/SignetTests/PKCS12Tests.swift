import Foundation
import SignetAuthority
import SignetDelivery
import SignetKeys
import SignetKubernetes
import SignetManaged
import Testing
import X509

/// Keystores for applications that do not read PEM, checked by OpenSSL 3 reading them back.
@Suite("PKCS#12 keystores and the Secret's extra outputs")
struct PKCS12Tests {
    @Test(
        "a keystore holds the key and chain, a truststore the root; OpenSSL reads both with the password and refuses a wrong one"
    )
    func keystoresReadByOpenSSL() async throws {
        let (ca, directory) = try await Fixtures.issuingCA()
        _ = ca
        let work = try Fixtures.temporaryDirectory("pkcs12")
        let (leafKey, keyPEM) = try KeyAlgorithm.ecdsaP256.generate()
        let chain = try PEMFiles.certificates(at: directory.certificate)
        let root = try PEMFiles.certificates(at: directory.rootCertificate)
        // A self-made leaf is enough here: the keystore's job is to carry whatever chain it is given.
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: leafKey.publicKey, notValidBefore: Date(),
            notValidAfter: Date().addingTimeInterval(3600),
            issuer: DistinguishedName { CommonName("leaf.example.com") },
            subject: DistinguishedName { CommonName("leaf.example.com") },
            signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions(), issuerPrivateKey: leafKey
        )
        var contents = TLSSecretContents(
            chain: [leaf] + chain, privateKeyPEM: keyPEM, root: root[0], issuer: "test", renewAfter: Date())
        try contents.addOutputs([.combinedPEM, .der], pkcs12Password: "s3cret pässword")
        for (key, bytes) in contents.outputs { try Data(bytes).write(to: URL(fileURLWithPath: work + "/" + key)) }
        #expect(Set(contents.outputs.keys) == ["tls-combined.pem", "key.der", "keystore.p12", "truststore.p12"])

        let keys = try Tool.run(
            "openssl",
            ["pkcs12", "-in", work + "/keystore.p12", "-passin", "pass:s3cret pässword", "-nocerts", "-nodes"])
        #expect(keys.succeeded, "\(keys.error)")
        let certificates = try Tool.run(
            "openssl", ["pkcs12", "-in", work + "/keystore.p12", "-passin", "pass:s3cret pässword", "-nokeys"])
        #expect(certificates.output.components(separatedBy: "BEGIN CERTIFICATE").count - 1 == 2)
        #expect(certificates.output.contains("friendlyName: certificate"))
        // The key in the keystore is the Secret's key.
        try keys.output.write(to: work + "/from-p12.pem")
        let fromKeystore = try Tool.run("openssl", ["pkey", "-in", work + "/from-p12.pem", "-pubout"]).output
        let original = try Tool.run("openssl", ["pkey", "-in", work + "/key.der", "-inform", "DER", "-pubout"]).output
        #expect(!fromKeystore.isEmpty && fromKeystore == original)
        let info = try Tool.run(
            "openssl", ["pkcs12", "-in", work + "/keystore.p12", "-passin", "pass:s3cret pässword", "-info", "-noout"])
        #expect(
            info.error.contains("MAC: sha256") && info.error.contains("PBES2, PBKDF2, AES-256-CBC"), "\(info.error)")

        let trusted = try Tool.run(
            "openssl", ["pkcs12", "-in", work + "/truststore.p12", "-passin", "pass:s3cret pässword", "-nokeys"])
        #expect(
            trusted.succeeded && trusted.output.components(separatedBy: "BEGIN CERTIFICATE").count - 1 == 1,
            "\(trusted.error)")

        let wrong = try Tool.run(
            "openssl", ["pkcs12", "-in", work + "/keystore.p12", "-passin", "pass:guess", "-nokeys"])
        #expect(!wrong.succeeded && wrong.error.lowercased().contains("mac verify error"), "\(wrong.error)")

        let combined = try String(contentsOfFile: work + "/tls-combined.pem", encoding: .utf8)
        #expect(
            combined.hasPrefix("-----BEGIN PRIVATE KEY-----")
                && combined.components(separatedBy: "BEGIN CERTIFICATE").count - 1 == 2)
    }
}
