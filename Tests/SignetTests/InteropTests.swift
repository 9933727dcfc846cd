import Crypto
import Foundation
import SignetAuthority
import SignetKeys
import Testing
import X509
import _CryptoExtras

/// Real tools judge Signet's output: openssl verifies chains, nginx serves them, curl connects as the Istio
/// tutorial's readers do.
@Suite("interoperability with openssl, nginx and curl", .serialized)
struct InteropTests {
    static let leafKeys: [(String, @Sendable () throws -> Certificate.PrivateKey)] = [
        ("P-256", { .init(P256.Signing.PrivateKey()) }),
        ("P-384", { .init(P384.Signing.PrivateKey()) }),
        ("RSA-2048", { .init(try _RSA.Signing.PrivateKey(keySize: .bits2048)) }),
        ("Ed25519", { .init(Curve25519.Signing.PrivateKey()) }),
    ]

    @Test(
        "every CA key type signs chains that openssl verifies, for every leaf key type",
        arguments: [KeyAlgorithm.ecdsaP256, .ecdsaP384, .rsa2048, .rsa3072, .rsa4096])
    func chainsVerify(_ caAlgorithm: KeyAlgorithm) async throws {
        let (ca, directory) = try await Fixtures.issuingCA(keyAlgorithm: caAlgorithm)
        let files = try Fixtures.temporaryDirectory()
        for (label, makeKey) in Self.leafKeys {
            let plan = try IssuanceRules.plan(
                IssuanceRequest(
                    csrPEM: try Fixtures.csr(
                        key: try makeKey(), dnsNames: ["a.example.com"], ipAddresses: ["127.0.0.1"])),
                policy: try Fixtures.policy("*.example.com", "127.0.0.1"), now: Date(),
                issuerNotAfter: ca.certificate.notValidAfter
            )
            let leaf = try await LeafCertificateFactory.issue(
                plan, by: ca, serial: SerialNumbers.random(),
                validity: LeafCertificateFactory.validity(for: .seconds(86_400), now: Date()))
            let path = files + "/\(label).crt"
            try PEMFiles.pem([leaf]).write(to: path)
            let verify = try Tool.run(
                "openssl",
                [
                    "verify", "-CAfile", directory.rootCertificate, "-untrusted", directory.certificate, "-purpose",
                    "sslserver", path,
                ])
            #expect(verify.succeeded, "CA \(caAlgorithm.rawValue), leaf \(label): \(verify.output)\(verify.error)")
            let text = try Tool.run("openssl", ["x509", "-in", path, "-noout", "-text"]).output
            #expect(text.contains("DNS:a.example.com, IP Address:127.0.0.1"))
            if label == Self.leafKeys.first?.0 {
                let crl = try await CRLCheck.signAndVerify(ca, revoking: leaf, issuerPath: directory.certificate)
                #expect(
                    crl?.contains("Key Compromise") == true, "CA \(caAlgorithm.rawValue) signs a CRL openssl verifies")
            }
        }
    }

    @Test(
        "nginx serves two SNI hosts with Signet certificates and a mutual-TLS host that accepts only Signet client certificates"
    )
    func nginxGateway() async throws {
        try #require(Tool.isInstalled("nginx"), "nginx is not installed; the README's test command installs it")
        let signet = try ServerProcess()
        defer { signet.stop() }
        let token = try signet.createToken(
            name: "gateway", allow: ["httpbin.example.com", "bookinfo.com", "mtls.example.com", "client.example.com"],
            extra: ["--profiles", "server,client"])
        let work = signet.dataDirectory + "/nginx"
        func issue(_ host: String, profile: String = "server", key: String = "ecdsa-p256") throws {
            let result = try signet.signet([
                "issue", "--server", signet.url, "--token", token, "--cacert", signet.rootCertificate,
                "--generate-key", key, "--dns", host, "--profile", profile, "--out", work + "/" + host,
            ])
            #expect(result.succeeded, "\(result.error)")
        }
        try issue("httpbin.example.com")
        try issue("bookinfo.com", key: "rsa-2048")
        try issue("mtls.example.com")
        try issue("client.example.com", profile: "client")

        let port = try freePort()
        let server = { (host: String, extra: String) in
            """
                server {
                    listen 127.0.0.1:\(port) ssl;
                    server_name \(host);
                    ssl_certificate \(work)/\(host)/tls.crt;
                    ssl_certificate_key \(work)/\(host)/tls.key;
                    \(extra)
                    location / { return 200 "\(host) verify=$ssl_client_verify\\n"; }
                }
            """
        }
        let configuration = Fixtures.nginxConfiguration(
            work: work,
            servers: """
                \(server("httpbin.example.com", ""))
                \(server("bookinfo.com", ""))
                \(server("mtls.example.com", "ssl_verify_client on; ssl_client_certificate \(work)/mtls.example.com/ca.crt;"))
                """)
        try configuration.write(to: work + "/nginx.conf")
        let nginx = try Fixtures.startNginx(work: work)
        defer {
            nginx.terminate()
            nginx.waitUntilExit()
        }

        func curl(_ host: String, _ extra: [String] = []) throws -> Tool.Result {
            try Tool.run(
                "curl",
                [
                    "-sS", "--max-time", "5", "--retry", "20", "--retry-connrefused", "--retry-delay", "0",
                    "--resolve", "\(host):\(port):127.0.0.1", "--cacert", work + "/\(host)/ca.crt",
                ] + extra + ["https://\(host):\(port)/"])
        }
        let httpbin = try curl("httpbin.example.com")
        #expect(httpbin.output == "httpbin.example.com verify=NONE\n", "\(httpbin.error)")
        let bookinfo = try curl("bookinfo.com")
        #expect(bookinfo.output == "bookinfo.com verify=NONE\n", "\(bookinfo.error)")

        let withoutClientCertificate = try curl("mtls.example.com", ["-w", "%{http_code}", "-o", "/dev/null"])
        #expect(withoutClientCertificate.output == "400", "nginx refuses a request without a client certificate")
        let clientDirectory = work + "/client.example.com"
        let withClientCertificate = try curl(
            "mtls.example.com", ["--cert", clientDirectory + "/tls.crt", "--key", clientDirectory + "/tls.key"])
        #expect(withClientCertificate.output == "mtls.example.com verify=SUCCESS\n", "\(withClientCertificate.error)")
        let serverCertificateAsClient = try curl(
            "mtls.example.com",
            [
                "--cert", work + "/httpbin.example.com/tls.crt", "--key", work + "/httpbin.example.com/tls.key", "-w",
                "%{http_code}", "-o", "/dev/null",
            ])
        #expect(
            serverCertificateAsClient.output == "400",
            "a server-profile certificate is not accepted as a client certificate")
        // A client certificate from another CA, for the same name and with clientAuth: refused.
        let made = try Tool.run(
            "openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                "-subj", "/CN=client.example.com", "-addext", "subjectAltName=DNS:client.example.com",
                "-addext", "extendedKeyUsage=clientAuth", "-keyout", work + "/stranger.key", "-out",
                work + "/stranger.crt",
            ])
        #expect(made.succeeded, "\(made.error)")
        let stranger = try curl(
            "mtls.example.com",
            [
                "--cert", work + "/stranger.crt", "--key", work + "/stranger.key", "-w", "%{http_code}", "-o",
                "/dev/null",
            ])
        #expect(
            stranger.output == "400",
            "a client certificate from another CA is refused: \(stranger.output) \(stranger.error)")

        let (_, otherCA) = try await Fixtures.issuingCA()
        let wrongCA = try Tool.run(
            "curl",
            [
                "-sS", "--max-time", "5", "--resolve", "httpbin.example.com:\(port):127.0.0.1",
                "--cacert", otherCA.rootCertificate, "https://httpbin.example.com:\(port)/",
            ])
        #expect(wrongCA.status == 60, "a client trusting another root refuses the gateway: \(wrongCA.error)")
    }
}
