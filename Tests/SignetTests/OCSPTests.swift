import Foundation
import Logging
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetServer
import Synchronization
import Testing
import X509

/// The OCSP responder as `openssl ocsp` sees it: good (nonce echoed), revoked with time and reason (at once, even when a
/// cached "good" was served before), unknown; GET and POST; a delegated responder certificate that is recorded in
/// the ledger and replaced at half its life; and every bad request answered in OCSP's own terms.
@Suite("OCSP: the responder openssl asks", .serialized)
struct OCSPTests {
    final class Rig: @unchecked Sendable {
        let server: ServerProcess
        let work: String
        let token: String

        init() throws {
            work = try Fixtures.temporaryDirectory("signet-ocsp")
            let port = try freePort()
            try "ocsp:\n  baseURL: https://127.0.0.1:\(port)\n".write(to: work + "/signet.yaml")
            server = try ServerProcess(
                dataDirectory: work + "/data", arguments: ["--config", work + "/signet.yaml"], port: port)
            token = try server.createToken(name: "edge", allow: ["*.example.com"])
        }

        /// Issues a certificate for `name` into `work/name/`; returns its serial (lower-case hex).
        func issue(_ name: String) throws -> String {
            let issued = try server.signet([
                "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
                "--generate-key", "ecdsa-p256", "--dns", "\(name).example.com", "--out", work + "/\(name)",
            ])
            guard issued.succeeded else { throw ServerProcess.ServerFailed(log: issued.error) }
            return try Tool.run("openssl", ["x509", "-in", work + "/\(name)/tls.crt", "-noout", "-serial"]).output
                .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "")
                .lowercased()
        }

        /// `openssl ocsp` against the responder, verifying the answer up to the root.
        func ask(_ arguments: [String]) throws -> Tool.Result {
            try Tool.run(
                "openssl",
                [
                    "ocsp", "-issuer", server.intermediateCertificate, "-CAfile", server.rootCertificate,
                    "-url", server.url + "/ocsp", "-timeout", "10",
                ] + arguments)
        }

        /// The DER request openssl makes about `name`'s certificate (SHA-1 CertID, no nonce), written to a file.
        func request(for name: String) throws -> String {
            let path = work + "/\(name)-request.der"
            let made = try Tool.run(
                "openssl",
                [
                    "ocsp", "-issuer", server.intermediateCertificate, "-cert", work + "/\(name)/tls.crt", "-no_nonce",
                    "-reqout", path,
                ])
            guard made.succeeded else { throw ServerProcess.ServerFailed(log: made.error) }
            return path
        }

        func stop() { server.stop() }
    }

    @Test(
        "openssl ocsp: good with the nonce echoed, revoked with reason and time at once after signet certs revoke (a cached good replaced), unknown; SHA-256 CertIDs; new certificates name the responder in authorityInfoAccess"
    )
    func goodRevokedUnknown() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let good = try rig.issue("good"), bad = try rig.issue("bad")
        let aia = try Tool.run("openssl", ["x509", "-in", rig.work + "/good/tls.crt", "-noout", "-ocsp_uri"]).output
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(aia == rig.server.url + "/ocsp", "authorityInfoAccess names the responder: \(aia)")

        let first = try rig.ask(["-cert", rig.work + "/good/tls.crt", "-resp_text"])
        #expect(first.succeeded && first.error.contains("Response verify OK"), "\(first.output)\(first.error)")
        #expect(first.output.contains("\(rig.work)/good/tls.crt: good"), "\(first.output)")
        #expect(
            first.output.contains("OCSP Nonce") && !first.error.contains("WARNING: no nonce"),
            "the nonce is echoed: \(first.output)\(first.error)")
        #expect(
            first.output.contains("OCSP Signing") && first.output.contains("OCSP No Check")
                && first.output.contains("CN=Signet OCSP Responder"),
            "a delegated responder: OCSPSigning, nocheck")

        // A cached "good" for the certificate about to be revoked, then the revocation: the next answer is revoked.
        let before = try rig.ask(["-cert", rig.work + "/bad/tls.crt", "-no_nonce"])
        #expect(before.output.contains("bad/tls.crt: good"), "\(before.output)\(before.error)")
        let revoked = try rig.server.signet([
            "certs", "revoke", bad, "--reason", "keyCompromise", "--server", rig.server.url, "--token", rig.token,
            "--cacert", rig.server.rootCertificate,
        ])
        #expect(revoked.succeeded, "\(revoked.error)")
        let after = try rig.ask(["-cert", rig.work + "/bad/tls.crt", "-no_nonce", "-resp_text"])
        #expect(after.succeeded && after.error.contains("Response verify OK"), "\(after.output)\(after.error)")
        #expect(
            after.output.contains("bad/tls.crt: revoked") && after.output.contains("Reason: keyCompromise"),
            "\(after.output)")
        #expect(after.output.contains("Revocation Time:"), "with the time of the revocation: \(after.output)")
        let record = try Tool.run(
            "curl",
            [
                "-s", "--cacert", rig.server.rootCertificate, "-H", "Authorization: Bearer \(rig.token)",
                rig.server.url + "/v1/certificates/\(bad)",
            ]
        ).output
        let revokedAt = try #require(
            (try JSONSerialization.jsonObject(with: Data(record.utf8)) as? [String: Any])?["revokedAt"] as? String)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "MMM d HH:mm:ss yyyy"
        let expected = formatter.string(from: try #require(ISO8601DateFormatter().date(from: revokedAt)))
        #expect(
            after.output.replacingOccurrences(of: "  ", with: " ").contains("Revocation Time: \(expected) GMT"),
            "the ledger's time \(expected): \(after.output)")

        let sha256 = try rig.ask([
            "-sha256", "-cert", rig.work + "/good/tls.crt", "-cert", rig.work + "/bad/tls.crt", "-resp_text",
        ])
        #expect(sha256.succeeded && sha256.output.contains("Hash Algorithm: sha256"), "\(sha256.output)\(sha256.error)")
        #expect(
            sha256.output.contains("good/tls.crt: good") && sha256.output.contains("bad/tls.crt: revoked"),
            "two certificates in one request")
        let unknown = try rig.ask(["-serial", "0x99"])
        #expect(unknown.succeeded && unknown.output.contains("0x99: unknown"), "\(unknown.output)\(unknown.error)")
        #expect(good != bad)

        // The responder's certificate is in the ledger like everything Signet signs.
        let auditor = try rig.server.createToken(name: "audit", allow: [], extra: ["--auditor"])
        let listed = try Tool.run(
            "curl",
            [
                "-s", "--cacert", rig.server.rootCertificate, "-H", "Authorization: Bearer \(auditor)",
                rig.server.url + "/v1/certificates?requester=signet:ocsp-responder",
            ]
        ).output
        let items =
            (try JSONSerialization.jsonObject(with: Data(listed.utf8)) as? [String: Any])?["items"] as? [[String: Any]]
            ?? []
        #expect(items.count == 1 && items.first?["profile"] as? String == "ocsp-signing", "\(listed)")

        let metrics = try rig.server.metrics()
        for status in ["good", "revoked", "unknown"] {
            #expect(metrics.contains("signet_ocsp_responses_total{status=\"\(status)\"}"), "\(status)")
        }
        #expect(metrics.contains("signet_ocsp_signatures_total"))
        let ready = try Tool.run("curl", ["-s", "--cacert", rig.server.rootCertificate, rig.server.url + "/readyz"])
            .output
        #expect(ready.contains("\"ocsp\":\"ok\""), "\(ready)")
    }

    @Test(
        "GET /ocsp/{base64}: escaped or not, the same signed answer, with caching headers that end at nextUpdate; POST answers the same"
    )
    func getAndPost() throws {
        let rig = try Rig()
        defer { rig.stop() }
        _ = try rig.issue("web")
        let request = try rig.request(for: "web")
        let base64 = Data(try Data(contentsOf: URL(fileURLWithPath: request))).base64EncodedString()
        let escaped = base64.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? base64
        var bodies: [Data] = []
        for (index, path) in [escaped, base64, String(base64.trimmingCharacters(in: CharacterSet(charactersIn: "=")))]
            .enumerated()
        {
            let file = rig.work + "/get\(index).der"
            let fetched = try Tool.run(
                "curl",
                [
                    "-s", "--path-as-is", "--cacert", rig.server.rootCertificate, "-D", "-", "-o", file,
                    rig.server.url + "/ocsp/" + path,
                ])
            let headers = fetched.output.lowercased()
            #expect(headers.contains("content-type: application/ocsp-response"), "\(fetched.output)")
            #expect(
                headers.contains("cache-control: public, max-age=") && headers.contains("expires:")
                    && headers.contains("last-modified:"), "\(fetched.output)")
            let check = try Tool.run(
                "openssl",
                [
                    "ocsp", "-respin", file, "-issuer", rig.server.intermediateCertificate, "-cert",
                    rig.work + "/web/tls.crt",
                    "-CAfile", rig.server.rootCertificate, "-no_nonce",
                ])
            #expect(
                check.succeeded && check.output.contains("web/tls.crt: good")
                    && check.error.contains("Response verify OK"), "\(path): \(check.output)\(check.error)")
            bodies.append(try Data(contentsOf: URL(fileURLWithPath: file)))
        }
        #expect(Set(bodies).count == 1, "a cached answer is the same bytes every time")
        let posted = rig.work + "/post.der"
        let post = try Tool.run(
            "curl",
            [
                "-s", "--cacert", rig.server.rootCertificate, "-H", "Content-Type: application/ocsp-request",
                "--data-binary", "@" + request, "-o", posted, rig.server.url + "/ocsp",
            ])
        let postedBody = try Data(contentsOf: URL(fileURLWithPath: posted))
        #expect(post.succeeded && postedBody == bodies[0])
    }

    @Test(
        "bad input: garbage, an empty or oversized body, bad base64, another issuer's CertID, an unknown hash, a signed-request version; each an OCSP error status, nothing recorded, the responder still answers"
    )
    func badInput() throws {
        let rig = try Rig()
        defer { rig.stop() }
        _ = try rig.issue("web")
        func status(of file: String) throws -> String {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
            // An unsuccessful OCSPResponse is SEQUENCE { ENUMERATED status } and nothing else.
            guard bytes.count == 5, bytes[0] == 0x30, bytes[2] == 0x0a else {
                return "successful or unreadable: \(bytes.prefix(8))"
            }
            return [
                "0": "successful", "1": "malformedRequest", "2": "internalError", "3": "tryLater", "5": "sigRequired",
                "6": "unauthorized",
            ]["\(bytes[4])"] ?? "?"
        }
        func post(_ body: [UInt8], type: String = "application/ocsp-request") throws -> (
            code: String, status: String, text: String
        ) {
            let file = rig.work + "/body.der", answer = rig.work + "/answer.der"
            try Data(body).write(to: URL(fileURLWithPath: file))
            let result = try Tool.run(
                "curl",
                [
                    "-s", "--cacert", rig.server.rootCertificate, "-H", "Content-Type: \(type)", "--data-binary",
                    "@" + file,
                    "-o", answer, "-w", "%{http_code}", rig.server.url + "/ocsp",
                ])
            return (result.output, try status(of: answer), (try? String(contentsOfFile: answer, encoding: .utf8)) ?? "")
        }
        let request = try rig.request(for: "web")
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: request)))

        #expect(try post(Array("not an OCSP request".utf8)).status == "malformedRequest")
        #expect(try post([]).status == "malformedRequest")
        #expect(try post(Array(good.prefix(good.count - 3))).status == "malformedRequest", "truncated")
        #expect(try post(good + [0x00]).status == "malformedRequest", "trailing bytes")
        #expect(try post([UInt8](repeating: 0x30, count: 20_000)).status == "malformedRequest", "oversized")
        // The SHA-1 OID (06 05 2b 0e 03 02 1a) changed into one that is not a hash Signet answers with.
        var unknownHash = good
        if let at = (0..<(good.count - 7)).first(where: {
            Array(good[$0..<($0 + 7)]) == [0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a]
        }) {
            unknownHash[at + 6] = 0x1b
        }
        #expect(unknownHash != good)
        #expect(try post(unknownHash).status == "unauthorized")
        let wrongType = try post(good, type: "application/json")
        #expect(
            wrongType.code == "415" && wrongType.text.contains("ocsp-request")
                && wrongType.text.contains("unsupported-media-type"),
            "a request that is not OCSP at all is a problem: \(wrongType.text)")

        // Asking the intermediate's responder about the intermediate itself (issued by the root): not this issuer.
        let other = try Tool.run(
            "openssl",
            [
                "ocsp", "-issuer", rig.server.rootCertificate, "-cert", rig.server.intermediateCertificate,
                "-url", rig.server.url + "/ocsp", "-CAfile", rig.server.rootCertificate,
            ])
        #expect(
            other.output.contains("unauthorized") || other.error.contains("unauthorized"),
            "\(other.output)\(other.error)")

        for path in ["%%%", "not*base64", "AAAA"] {
            let answer = rig.work + "/get.der"
            let code = try Tool.run(
                "curl",
                [
                    "-s", "--path-as-is", "--cacert", rig.server.rootCertificate, "-o", answer, "-w", "%{http_code}",
                    rig.server.url + "/ocsp/" + path,
                ]
            ).output
            let answered = try status(of: answer)
            #expect(code == "200" && answered == "malformedRequest", "GET /ocsp/\(path): \(code) \(answered)")
        }

        // Nothing was recorded for any of it (no responder certificate was even needed), and the responder still answers.
        let auditor = try rig.server.createToken(name: "audit", allow: [], extra: ["--auditor"])
        let listed = try Tool.run(
            "curl",
            [
                "-s", "--cacert", rig.server.rootCertificate, "-H", "Authorization: Bearer \(auditor)",
                rig.server.url + "/v1/certificates?requester=signet:ocsp-responder",
            ]
        ).output
        #expect(
            ((try JSONSerialization.jsonObject(with: Data(listed.utf8)) as? [String: Any])?["items"] as? [[String: Any]])?
                .isEmpty == true, "\(listed)")
        let metrics = try rig.server.metrics()
        #expect(
            metrics.contains("signet_ocsp_responses_total{status=\"malformedRequest\"} 8"),
            "\(metrics.split(separator: "\n").filter { $0.contains("ocsp") })")
        let still = try rig.ask(["-cert", rig.work + "/web/tls.crt"])
        #expect(still.succeeded && still.output.contains("web/tls.crt: good"), "\(still.output)\(still.error)")
    }

    @Test(
        "the responder certificate is made on first use, recorded before it signs, and replaced once half its life has passed; answers never outlive the certificate that signed them"
    )
    func responderRenewal() async throws {
        let (ca, _) = try await Fixtures.issuingCA()
        let work = try Fixtures.temporaryDirectory("ocsp-renewal")
        let ledger = try CertificateLedger(path: work + "/ledger.sqlite")
        let clock = Mutex(Date())
        let responder = try OCSPResponder(
            ca: ca, ledger: ledger, validity: .seconds(3600), responderLifetime: .seconds(4 * 3600),
            logger: Logger(label: "test"),
            now: { clock.withLock { $0 } }
        )
        try PEMFiles.pem([ca.certificate]).write(toFile: work + "/issuer.pem", atomically: true, encoding: .utf8)
        let request = work + "/request.der"
        #expect(
            try Tool.run("openssl", ["ocsp", "-issuer", work + "/issuer.pem", "-serial", "0x1234", "-reqout", request])
                .succeeded)
        let requestDER = [UInt8](try Data(contentsOf: URL(fileURLWithPath: request)))
        func signer(_ answer: OCSPResponder.Answer) throws -> (serial: String, nextUpdate: String) {
            try Data(answer.der).write(to: URL(fileURLWithPath: work + "/response.der"))
            let text = try Tool.run("openssl", ["ocsp", "-respin", work + "/response.der", "-resp_text", "-noverify"])
                .output
            // The responder certificate's serial, on the line after the last "Serial Number:" (the CertID's is inline).
            let serial =
                text.components(separatedBy: "Serial Number:").last?.split(separator: "\n").first.map {
                    $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: ":", with: "")
                } ?? ""
            let next =
                text.components(separatedBy: "Next Update: ").dropFirst().first?.split(separator: "\n").first.map(
                    String.init) ?? ""
            return (serial, next)
        }
        func responderSerials() async throws -> [String] {
            var query = CertificateQuery()
            query.requester = OCSPResponder.requester
            return try await ledger.certificates(matching: query, now: clock.withLock { $0 }).entries.map(\.serial)
        }
        #expect(try await responderSerials().isEmpty, "nothing is made before the first request")
        let first = try signer(await responder.respond(to: requestDER))
        let recorded = try await responderSerials()
        #expect(
            recorded.count == 1 && recorded.first == first.serial.lowercased(),
            "recorded, and it is the one that signed: \(recorded) \(first)")

        // An hour on: the same responder (not due until two hours).
        clock.withLock { $0 = $0.addingTimeInterval(3600) }
        #expect(try signer(await responder.respond(to: requestDER)).serial == first.serial)
        // Past half its life: it still signs this answer, and a replacement is made beside it.
        clock.withLock { $0 = $0.addingTimeInterval(3700) }
        _ = await responder.respond(to: requestDER)
        var serials: [String] = []
        for _ in 0..<50 where serials.count < 2 {
            try await Task.sleep(for: .milliseconds(100))
            serials = try await responderSerials()
        }
        #expect(serials.count == 2, "replaced once: \(serials)")
        // Close to its end, the old one no longer signs: every answer comes from the new certificate.
        clock.withLock { $0 = $0.addingTimeInterval(2 * 3600) }
        let late = try signer(await responder.respond(to: requestDER))
        #expect(late.serial != first.serial && serials.contains(late.serial.lowercased()), "\(late) \(serials)")
        try ledger.close()
    }
}
