import Foundation
import SignetAuthority
import SignetKeys
import Testing

/// Revocation as the tools that check it see it: `signet certs revoke` against a running server, then the CRL it
/// serves, verified by openssl against the intermediate, listing the revoked certificate with its reason, failing it
/// in `openssl verify -crl_check` while a good certificate still passes, and numbered upward across restarts.
@Suite("revocation: the CRL openssl checks", .serialized)
struct RevocationTests {
    func fetch(_ server: ServerProcess, _ path: String, to file: String) throws -> String {
        let result = try Tool.run(
            "curl",
            ["-sf", "--max-time", "10", "--cacert", server.rootCertificate, "-D", "-", "-o", file, server.url + path])
        #expect(result.succeeded, "GET \(path): \(result.error)")
        return result.output
    }

    func crlNumber(_ file: String) throws -> Int64 {
        let text = try Tool.run("openssl", ["crl", "-in", file, "-inform", "DER", "-noout", "-crlnumber"]).output
        // crlNumber=0x019A…
        let value =
            text.split(separator: "=").last.map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        return Int64(value.hasPrefix("0x") ? String(value.dropFirst(2)) : value, radix: 16) ?? -1
    }

    @Test(
        "a revoked certificate is on the CRL within seconds, which openssl verifies; openssl verify -crl_check refuses it and accepts a good one"
    )
    func crlWithOpenSSL() throws {
        let directory = try Fixtures.temporaryDirectory("signet-crl")
        let server = try ServerProcess(dataDirectory: directory + "/data")
        defer { server.stop() }
        let token = try server.createToken(name: "edge", allow: ["*.example.com"])
        let keyID = try Fixtures.subjectKeyIdentifier(ofCertificateAt: server.intermediateCertificate)
        #expect(keyID.count == 40, "the intermediate's key identifier: \(keyID)")

        var serials: [String] = []
        for name in ["bad", "good"] {
            let issued = try server.signet([
                "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
                "--generate-key", "ecdsa-p256", "--dns", "\(name).example.com", "--out", directory + "/\(name)",
            ])
            #expect(issued.succeeded, "\(issued.output)\(issued.error)")
            serials.append(
                try Tool.run("openssl", ["x509", "-in", directory + "/\(name)/tls.crt", "-noout", "-serial"]).output
                    .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "")
                    .lowercased())
        }

        let first = directory + "/first.crl"
        let headers = try fetch(server, "/crl/\(keyID).crl", to: first)
        #expect(headers.lowercased().contains("content-type: application/pkix-crl"), "\(headers)")
        #expect(
            headers.lowercased().contains("expires:")
                && headers.lowercased().contains("cache-control: public, max-age="))
        let empty = try Tool.run(
            "openssl",
            ["crl", "-in", first, "-inform", "DER", "-noout", "-text", "-CAfile", server.intermediateCertificate])
        #expect(empty.succeeded && (empty.output + empty.error).contains("verify OK"), "\(empty.output)\(empty.error)")
        #expect(
            empty.output.contains("No Revoked Certificates") && empty.output.contains("X509v3 CRL Number")
                && empty.output.contains("Authority Key Identifier"))
        let firstNumber = try crlNumber(first)

        let revoked = try server.signet([
            "certs", "revoke", serials[0], "--reason", "keyCompromise", "--server", server.url, "--token", token,
            "--cacert", server.rootCertificate,
        ])
        #expect(revoked.succeeded, "\(revoked.error)")
        let second = directory + "/second.crl"
        var text = ""
        let deadline = Date().addingTimeInterval(10)
        repeat {
            Thread.sleep(forTimeInterval: 0.3)
            _ = try fetch(server, "/crl/\(keyID).crl", to: second)
            text = try Tool.run("openssl", ["crl", "-in", second, "-inform", "DER", "-noout", "-text"]).output
        } while !text.uppercased().contains(serials[0].uppercased()) && Date() < deadline
        #expect(
            text.uppercased().contains("SERIAL NUMBER: \(serials[0].uppercased())"),
            "the revoked serial is listed: \(text)")
        #expect(text.contains("Key Compromise"), "with its reason")
        #expect(!text.uppercased().contains(serials[1].uppercased()))
        let secondNumber = try crlNumber(second)
        #expect(firstNumber > 0 && secondNumber > firstNumber, "\(firstNumber) then \(secondNumber)")

        // openssl verify -crl_check checks the leaf against its issuer's CRL (the root's CRL, made offline, is
        // -crl_check_all's business).
        let pem = directory + "/second.pem"
        _ = try fetch(server, "/crl/\(keyID).pem", to: pem)
        #expect(try String(contentsOfFile: pem, encoding: .utf8).hasPrefix("-----BEGIN X509 CRL-----"))
        for name in ["bad", "good"] {
            let check = try Tool.run(
                "openssl",
                [
                    "verify", "-crl_check", "-CAfile", server.rootCertificate, "-untrusted",
                    server.intermediateCertificate,
                    "-CRLfile", pem, directory + "/\(name)/tls.crt",
                ])
            if name == "bad" {
                #expect(
                    !check.succeeded && (check.output + check.error).contains("certificate revoked"),
                    "\(check.output)\(check.error)")
            } else {
                #expect(check.succeeded, "\(check.output)\(check.error)")
            }
        }

        let metrics = try server.metrics()
        #expect(
            metrics.contains("signet_crl_next_update_timestamp_seconds{issuer=\"\(keyID)\"}")
                && metrics.contains("signet_crl_entries{issuer=\"\(keyID)\"} 1"), "\(metrics.suffix(800))")
        #expect(metrics.contains("signet_crl_signatures_total"))
        let ready = try Tool.run("curl", ["-s", "--cacert", server.rootCertificate, server.url + "/readyz"]).output
        #expect(ready.contains("\"crl\":\"ok\""), "\(ready)")

        // The number survives a restart and keeps rising.
        server.stop()
        let restarted = try ServerProcess(dataDirectory: directory + "/data", port: server.port)
        defer { restarted.stop() }
        let third = directory + "/third.crl"
        _ = try fetch(restarted, "/crl/\(keyID).crl", to: third)
        #expect(try crlNumber(third) >= crlNumber(second), "the stored CRL is served again, never a lower number")
        #expect(
            try Tool.run(
                "curl",
                [
                    "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", restarted.rootCertificate,
                    restarted.url + "/crl/00.crl",
                ]
            ).output == "404")
    }

    @Test("with crl.baseURL, every new certificate names its CRL in cRLDistributionPoints, and that URL serves it")
    func distributionPoint() throws {
        let directory = try Fixtures.temporaryDirectory("signet-crldp")
        let port = try freePort()
        try "crl:\n  baseURL: https://127.0.0.1:\(port)/\n  validity: 3d\n".write(to: directory + "/signet.yaml")
        let server = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", directory + "/signet.yaml"], port: port)
        defer { server.stop() }
        let token = try server.createToken(name: "edge", allow: ["*.example.com"])
        let issued = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "dp.example.com", "--out", directory + "/dp",
        ])
        #expect(issued.succeeded, "\(issued.error)")
        let text = try Tool.run(
            "openssl", ["x509", "-in", directory + "/dp/tls.crt", "-noout", "-ext", "crlDistributionPoints"]
        ).output
        let url = try #require(
            text.split(separator: "\n").compactMap { line -> String? in
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                return trimmed.hasPrefix("URI:") ? String(trimmed.dropFirst(4)) : nil
            }.first, "\(text)")
        #expect(url.hasPrefix("https://127.0.0.1:\(port)/crl/") && url.hasSuffix(".crl"))
        let crl = directory + "/dp.crl"
        #expect(try Tool.run("curl", ["-sf", "--cacert", server.rootCertificate, "-o", crl, url]).succeeded)
        let checked = try Tool.run(
            "openssl",
            [
                "crl", "-in", crl, "-inform", "DER", "-noout", "-nextupdate", "-lastupdate", "-CAfile",
                server.intermediateCertificate,
            ])
        #expect(
            checked.succeeded && (checked.output + checked.error).contains("verify OK"),
            "\(checked.output)\(checked.error)")
        let good = try Tool.run(
            "openssl",
            [
                "verify", "-crl_check", "-CAfile", server.rootCertificate, "-untrusted", server.intermediateCertificate,
                "-CRLfile", crl, directory + "/dp/tls.crt",
            ])
        #expect(good.succeeded, "\(good.output)\(good.error)")
    }

    @Test(
        "the root's CRL, made offline with signet ca crl, is served beside the intermediate's; openssl verify -crl_check_all passes with both and fails once the root revokes the intermediate"
    )
    func rootCRL() throws {
        let directory = try Fixtures.temporaryDirectory("signet-root-crl")
        // A first start makes the development CA; its root key is in the CA directory, as an offline root's would be on its own machine.
        var server = try ServerProcess(dataDirectory: directory + "/data")
        server.stop()
        let ca = server.caDirectory
        let made = try server.signet([
            "ca", "crl", "--root-cert", ca + "/root.crt", "--root-key", ca + "/root.key", "--days", "30", "--out",
            directory + "/root.crl",
        ])
        #expect(made.succeeded, "\(made.output)\(made.error)")
        let verified = try Tool.run(
            "openssl", ["crl", "-in", directory + "/root.crl", "-inform", "DER", "-noout", "-CAfile", ca + "/root.crt"])
        #expect((verified.output + verified.error).contains("verify OK"), "\(verified.output)\(verified.error)")
        try "crl:\n  rootCRL: \(directory)/root.crl\n".write(to: directory + "/signet.yaml")
        server = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", directory + "/signet.yaml"], port: server.port)
        defer { server.stop() }
        let served = directory + "/served-root.crl"
        _ = try fetch(
            server, "/crl/\(try Fixtures.subjectKeyIdentifier(ofCertificateAt: ca + "/root.crt")).crl", to: served)
        #expect(
            try Data(contentsOf: URL(fileURLWithPath: served))
                == Data(contentsOf: URL(fileURLWithPath: directory + "/root.crl")))
        let intermediate = directory + "/intermediate.pem"
        _ = try fetch(
            server, "/crl/\(try Fixtures.subjectKeyIdentifier(ofCertificateAt: server.intermediateCertificate)).pem",
            to: intermediate)

        let token = try server.createToken(name: "edge", allow: ["*.example.com"])
        let issued = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "chain.example.com", "--out", directory + "/leaf",
        ])
        #expect(issued.succeeded, "\(issued.error)")
        func verifyAll(_ rootCRL: String) throws -> Tool.Result {
            try Tool.run(
                "openssl",
                [
                    "verify", "-crl_check_all", "-CAfile", server.rootCertificate, "-untrusted",
                    server.intermediateCertificate,
                    "-CRLfile", intermediate, "-CRLfile", rootCRL, directory + "/leaf/tls.crt",
                ])
        }
        let withoutRoot = try Tool.run(
            "openssl",
            [
                "verify", "-crl_check_all", "-CAfile", server.rootCertificate, "-untrusted",
                server.intermediateCertificate,
                "-CRLfile", intermediate, directory + "/leaf/tls.crt",
            ])
        #expect(
            !withoutRoot.succeeded
                && (withoutRoot.output + withoutRoot.error).contains("unable to get certificate CRL"),
            "a chain missing the root's CRL fails: \(withoutRoot.output)\(withoutRoot.error)")
        let pem = directory + "/root.crl.pem"
        let good = try verifyAll(pem)
        #expect(good.succeeded, "\(good.output)\(good.error)")

        let intermediateSerial = try Tool.run(
            "openssl", ["x509", "-in", server.intermediateCertificate, "-noout", "-serial"]
        ).output
            .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "")
        let revoking = try server.signet([
            "ca", "crl", "--root-cert", ca + "/root.crt", "--root-key", ca + "/root.key", "--revoke-intermediate",
            intermediateSerial,
            "--reason", "cACompromise", "--out", directory + "/revoking.crl",
        ])
        #expect(revoking.succeeded, "\(revoking.error)")
        let refused = try verifyAll(directory + "/revoking.crl.pem")
        #expect(
            !refused.succeeded && (refused.output + refused.error).contains("certificate revoked"),
            "\(refused.output)\(refused.error)")
    }

    @Test(
        "nginx as a MUTUAL gateway with ssl_crl from Signet's CRLs: a client certificate is refused after signet certs revoke, a good one still accepted"
    )
    func nginxRefusesRevokedClients() throws {
        try #require(Tool.isInstalled("nginx"), "nginx is not installed; the README's test command installs it")
        let directory = try Fixtures.temporaryDirectory("signet-nginx-crl")
        var signet = try ServerProcess(dataDirectory: directory + "/data")
        signet.stop()
        let ca = signet.caDirectory
        #expect(
            try signet.signet([
                "ca", "crl", "--root-cert", ca + "/root.crt", "--root-key", ca + "/root.key", "--out",
                directory + "/root.crl",
            ]).succeeded)
        try "crl:\n  rootCRL: \(directory)/root.crl\n".write(to: directory + "/signet.yaml")
        signet = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", directory + "/signet.yaml"], port: signet.port)
        defer { signet.stop() }
        let token = try signet.createToken(
            name: "gateway", allow: ["*.example.com"], extra: ["--profiles", "server,client"])
        let work = directory + "/nginx"
        func issue(_ host: String, profile: String) throws {
            let result = try signet.signet([
                "issue", "--server", signet.url, "--token", token, "--cacert", signet.rootCertificate,
                "--generate-key", "ecdsa-p256", "--dns", host, "--profile", profile, "--out", work + "/" + host,
            ])
            #expect(result.succeeded, "\(result.error)")
        }
        try issue("mtls.example.com", profile: "server")
        try issue("alice.example.com", profile: "client")
        try issue("bob.example.com", profile: "client")
        // ca.crl as Signet writes it into Secrets: the intermediate's CRL, then the root's.
        func writeCRLs() throws -> String {
            _ = try fetch(
                signet,
                "/crl/\(try Fixtures.subjectKeyIdentifier(ofCertificateAt: signet.intermediateCertificate)).pem",
                to: work + "/intermediate.crl")
            _ = try fetch(
                signet, "/crl/\(try Fixtures.subjectKeyIdentifier(ofCertificateAt: signet.rootCertificate)).pem",
                to: work + "/root.crl")
            let bundle =
                try String(contentsOfFile: work + "/intermediate.crl", encoding: .utf8)
                + String(contentsOfFile: work + "/root.crl", encoding: .utf8)
            try bundle.write(to: work + "/ca.crl")
            return bundle
        }
        _ = try writeCRLs()
        try
            (String(contentsOfFile: signet.intermediateCertificate, encoding: .utf8)
            + String(contentsOfFile: signet.rootCertificate, encoding: .utf8))
            .write(to: work + "/clients-ca.pem")
        let port = try freePort()
        try Fixtures.nginxConfiguration(
            work: work,
            servers: """
                server {
                    listen 127.0.0.1:\(port) ssl;
                    server_name mtls.example.com;
                    ssl_certificate \(work)/mtls.example.com/tls.crt;
                    ssl_certificate_key \(work)/mtls.example.com/tls.key;
                    ssl_verify_client on;
                    ssl_verify_depth 2;
                    ssl_client_certificate \(work)/clients-ca.pem;
                    ssl_crl \(work)/ca.crl;
                    location / { return 200 "verify=$ssl_client_verify\\n"; }
                }
                """
        ).write(to: work + "/nginx.conf")
        let nginx = try Fixtures.startNginx(work: work)
        defer {
            nginx.terminate()
            nginx.waitUntilExit()
        }
        func asClient(_ name: String) throws -> String {
            try Tool.run(
                "curl",
                [
                    "-s", "--max-time", "5", "--retry", "20", "--retry-connrefused", "--retry-delay", "0", "-o",
                    "/dev/null", "-w", "%{http_code}",
                    "--resolve", "mtls.example.com:\(port):127.0.0.1", "--cacert", signet.rootCertificate,
                    "--cert", work + "/\(name).example.com/tls.crt", "--key", work + "/\(name).example.com/tls.key",
                    "https://mtls.example.com:\(port)/",
                ]
            ).output
        }
        #expect(
            try asClient("alice") == "200" && asClient("bob") == "200",
            "both clients are accepted while nothing is revoked")

        let alice = try Tool.run("openssl", ["x509", "-in", work + "/alice.example.com/tls.crt", "-noout", "-serial"])
            .output
            .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "")
        #expect(
            try signet.signet([
                "certs", "revoke", alice, "--reason", "keyCompromise", "--server", signet.url, "--token", token,
                "--cacert", signet.rootCertificate,
            ]).succeeded)
        let deadline = Date().addingTimeInterval(10)
        var listed = false
        while !listed, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.3)
            _ = try writeCRLs()
            listed = try Tool.run("openssl", ["crl", "-in", work + "/intermediate.crl", "-noout", "-text"]).output
                .uppercased().contains(alice.uppercased())
        }
        #expect(listed)
        // nginx reads ssl_crl when its configuration is loaded (Istio's SDS pushes a changed ca.crl to Envoy the same way).
        #expect(
            try Tool.run("nginx", Fixtures.nginxArguments(work: work) + ["-s", "reload"])
                .succeeded)
        var refused = ""
        let reloaded = Date().addingTimeInterval(10)
        repeat {
            Thread.sleep(forTimeInterval: 0.3)
            refused = try asClient("alice")
        } while refused == "200" && Date() < reloaded
        #expect(refused == "400", "the revoked client is refused: \(refused)")
        #expect(try asClient("bob") == "200", "the other client is still accepted")
    }

    @Test(
        "a CRL past its nextUpdate is an outage: openssl then refuses every certificate of the CA; Signet re-signs at half the validity, so its CRL never gets there"
    )
    func staleCRL() async throws {
        let directory = try Fixtures.temporaryDirectory("signet-stale-crl")
        try "crl:\n  validity: 60s\n  readinessMargin: 10s\n".write(to: directory + "/signet.yaml")
        let server = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", directory + "/signet.yaml"])
        defer { server.stop() }
        let token = try server.createToken(name: "edge", allow: ["*.example.com"])
        let issued = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "good.example.com", "--out", directory + "/good",
        ])
        #expect(issued.succeeded, "\(issued.error)")
        let keyID = try Fixtures.subjectKeyIdentifier(ofCertificateAt: server.intermediateCertificate)
        func verify(_ crl: String) throws -> Tool.Result {
            try Tool.run(
                "openssl",
                [
                    "verify", "-crl_check", "-CAfile", server.rootCertificate, "-untrusted",
                    server.intermediateCertificate,
                    "-CRLfile", crl, directory + "/good/tls.crt",
                ])
        }

        // A CRL of the same CA, signed with the same key, whose nextUpdate has passed: the good certificate fails.
        let signer = try FileKeySigner(path: server.caDirectory + "/intermediate.key", passphrase: nil)
        let ca = try await CALoader.load(from: CADirectory(path: server.caDirectory), signer: signer)
        let past = Date().addingTimeInterval(-120)
        let stale = try await RevocationList.sign(
            by: ca, number: 1, thisUpdate: past, nextUpdate: past.addingTimeInterval(60), entries: [])
        try stale.pem.write(to: directory + "/stale.crl")
        let outage = try verify(directory + "/stale.crl")
        #expect(
            !outage.succeeded && (outage.output + outage.error).contains("CRL has expired"),
            "\(outage.output)\(outage.error)")

        // Signet's own: re-signed when half its 60 s have passed, so it is always current.
        let first = directory + "/first.crl"
        _ = try fetch(server, "/crl/\(keyID).pem", to: first)
        let firstNumber = try crlNumber(pem: first)
        #expect(try verify(first).succeeded)
        var number = firstNumber
        let deadline = Date().addingTimeInterval(45)
        while number == firstNumber, Date() < deadline {
            try await Task.sleep(for: .seconds(2))
            _ = try fetch(server, "/crl/\(keyID).pem", to: directory + "/later.crl")
            number = try crlNumber(pem: directory + "/later.crl")
        }
        #expect(number > firstNumber, "a new CRL within half its validity")
        #expect(try verify(directory + "/later.crl").succeeded)
    }

    func crlNumber(pem file: String) throws -> Int64 {
        let text = try Tool.run("openssl", ["crl", "-in", file, "-noout", "-crlnumber"]).output
        let value =
            text.split(separator: "=").last.map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        return Int64(value.hasPrefix("0x") ? String(value.dropFirst(2)) : value, radix: 16) ?? -1
    }
}
