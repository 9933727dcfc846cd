import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SignetAuthority
import SignetLedger
import SignetServer
import SwiftASN1
import Testing
import X509
import _CryptoExtras

/// A Signet server on a temporary data directory, with one issuing token and one read-only token.
struct TestService {
    let server: SignetServer
    let directory: String
    let token: String
    let auditorToken: String

    static func make(configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestService {
        let directory = try Fixtures.temporaryDirectory("signet-api")
        var configuration = ServerConfiguration()
        configuration.dataDirectory = directory
        configuration.transport = .http
        configuration.port = 0
        configuration.tokenCacheLifetime = .zero
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let server = try await SignetServer.prepare(configuration, logger: logger)
        let (token, digest) = APITokens.mint()
        try await server.ledger.createToken(
            TokenEntry(
                name: "ci", secretSHA256: digest, allowedNames: ["*.example.com", "bookinfo.com", "127.0.0.1"],
                allowedProfiles: CertificateProfile.allCases, maximumLifetime: .seconds(90 * 86_400), createdAt: Date()
            ))
        let (auditor, auditorDigest) = APITokens.mint()
        try await server.ledger.createToken(
            TokenEntry(
                name: "auditor", secretSHA256: auditorDigest, allowedNames: [], allowedProfiles: [],
                maximumLifetime: .seconds(3600), createdAt: Date(),
                auditor: true
            ))
        return TestService(server: server, directory: directory, token: token, auditorToken: auditor)
    }

    func withClient(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let app = Application(router: try server.makeRouter())
        try await app.test(.router, body)
    }
}

struct Answer {
    let status: Int
    let headers: HTTPFields
    let json: [String: Any]
    let text: String
}

extension TestClientProtocol {
    func call(
        _ method: HTTPRequest.Method, _ uri: String, token: String? = nil, json: Any? = nil, raw: String? = nil,
        headers: HTTPFields = [:]
    ) async throws -> Answer {
        var fields = headers
        if let token { fields[.authorization] = "Bearer \(token)" }
        var body: ByteBuffer?
        if let json {
            fields[.contentType] = "application/json"
            body = ByteBuffer(bytes: Array(try JSONSerialization.data(withJSONObject: json)))
        } else if let raw {
            fields[.contentType] = fields[.contentType] ?? "application/json"
            body = ByteBuffer(string: raw)
        }
        return try await execute(uri: uri, method: method, headers: fields, body: body) { response in
            let text = String(buffer: response.body)
            let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
            return Answer(status: Int(response.status.code), headers: response.headers, json: object, text: text)
        }
    }
}

@Suite("REST API")
struct APITests {
    @Test("issues a chain that openssl verifies, with the promised extensions, and records it")
    func issues() async throws {
        let service = try await TestService.make()
        let csr = try Fixtures.csr(dnsNames: ["httpbin.example.com"])
        try await service.withClient { client in
            let answer = try await client.call(
                .post, "/v1/certificates", token: service.token, json: ["csr": csr, "duration": "720h"])
            #expect(answer.status == 201, "\(answer.text)")
            let serial = try #require(answer.json["serial"] as? String)
            #expect(answer.headers[.location] == "/v1/certificates/\(serial)")
            let chain = try #require(answer.json["chain"] as? String)
            let root = try #require(answer.json["ca"] as? String)
            #expect(chain.components(separatedBy: "BEGIN CERTIFICATE").count == 3, "leaf + intermediate")

            let files = try Fixtures.temporaryDirectory()
            try chain.write(to: files + "/tls.crt")
            try root.write(to: files + "/ca.crt")
            let verify = try Tool.run(
                "openssl",
                [
                    "verify", "-CAfile", files + "/ca.crt", "-untrusted", service.directory + "/ca/intermediate.crt",
                    files + "/tls.crt",
                ])
            #expect(verify.succeeded, "\(verify.output)\(verify.error)")

            let leaf = try Certificate(pemEncoded: try #require(answer.json["certificate"] as? String))
            #expect(leaf.serialNumber.bytes.count == 20)
            #expect(try leaf.extensions.basicConstraints == .notCertificateAuthority)
            #expect(try leaf.extensions.keyUsage == KeyUsage(digitalSignature: true))
            #expect(try leaf.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth]))
            #expect(try leaf.extensions.subjectKeyIdentifier != nil)
            #expect(
                try leaf.extensions.authorityKeyIdentifier?.keyIdentifier.map(Array.init)
                    == service.server.issuance.ca.keyIdentifier)
            #expect(
                try leaf.extensions.subjectAlternativeNames
                    == SubjectAlternativeNames([.dnsName("httpbin.example.com")]))
            #expect(leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore) == 720 * 3600 + 60)
            #expect(leaf.extensions.first { $0.oid == .X509ExtensionID.basicConstraints }?.critical == true)

            let stored = try #require(try await service.server.ledger.certificate(serial: serial))
            #expect(stored.requester == "token:ci")
            #expect(stored.dnsNames == ["httpbin.example.com"])
            var serializer = DER.Serializer()
            try serializer.serialize(leaf)
            #expect(stored.der == serializer.serializedBytes)
            #expect(stored.csrSHA256 == Array(SHA256.hash(data: try PEMDocumentBytes(csr))).hexString)

            let fetched = try await client.call(.get, "/v1/certificates/\(serial)", token: service.auditorToken)
            #expect(fetched.status == 200)
            #expect(fetched.json["requester"] as? String == "token:ci")
            #expect(fetched.json["status"] as? String == "valid")
            let pem = try await client.call(
                .get, "/v1/certificates/\(serial)", token: service.auditorToken,
                headers: [.accept: "application/pem-certificate-chain"])
            #expect(pem.text == chain)
        }
    }

    @Test("RSA keys get keyEncipherment; profiles set the extended key usage")
    func rsaAndProfiles() async throws {
        let service = try await TestService.make()
        let rsa = Certificate.PrivateKey(try _RSA.Signing.PrivateKey(keySize: .bits2048))
        try await service.withClient { client in
            let answer = try await client.call(
                .post, "/v1/certificates", token: service.token,
                json: ["csr": try Fixtures.csr(key: rsa, dnsNames: ["a.example.com"]), "profile": "server-client"])
            #expect(answer.status == 201, "\(answer.text)")
            let leaf = try Certificate(pemEncoded: try #require(answer.json["certificate"] as? String))
            #expect(try leaf.extensions.keyUsage == KeyUsage(digitalSignature: true, keyEncipherment: true))
            #expect(try leaf.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth, .clientAuth]))
        }
    }

    @Test(
        "every bad request gets its problem+json and leaves the certificates table unchanged", arguments: BadRequest.all
    )
    func badRequests(_ bad: BadRequest) async throws {
        let service = try await TestService.make()
        var tokenToUse: String?
        switch bad.credentials {
        case .valid: tokenToUse = service.token
        case .none: tokenToUse = nil
        case .unknown: tokenToUse = "sgt_not-a-real-token"
        case .revoked:
            try await service.server.ledger.revokeToken(name: "ci", at: Date())
            tokenToUse = service.token
        case .auditor: tokenToUse = service.auditorToken
        }
        let token = tokenToUse
        try await service.withClient { client in
            let answer = try await client.call(
                .post, "/v1/certificates", token: token, json: try bad.json(), raw: bad.raw)
            #expect(answer.status == bad.status, "\(bad.name): \(answer.text)")
            #expect(answer.headers[.contentType] == "application/problem+json")
            #expect(
                answer.json["type"] as? String != nil && answer.json["title"] as? String != nil
                    && answer.json["status"] as? Int == bad.status)
            let detail = answer.json["detail"] as? String ?? ""
            #expect(detail.contains(bad.detail), "\(bad.name): \(detail)")
            #expect(try await service.server.ledger.certificateCount() == 0)
            // The service keeps serving: a good request right after succeeds.
            let good = try await client.call(
                .post, "/v1/certificates", token: service.token,
                json: ["csr": try Fixtures.csr(dnsNames: ["ok.example.com"])])
            #expect(good.status == (bad.credentials == .revoked ? 401 : 201))
        }
    }

    @Test("a body that is not JSON by its content type gets 415")
    func wrongMediaType() async throws {
        let service = try await TestService.make()
        try await service.withClient { client in
            let answer = try await client.call(
                .post, "/v1/certificates", token: service.token, raw: "csr=abc",
                headers: [.contentType: "application/x-www-form-urlencoded"])
            #expect(answer.status == 415, "\(answer.text)")
            #expect(answer.headers[.contentType] == "application/problem+json")
        }
    }

    @Test("a refused request leaves an audit event saying who and why")
    func refusalsAreAudited() async throws {
        let service = try await TestService.make()
        try await service.withClient { client in
            let answer = try await client.call(
                .post, "/v1/certificates", token: service.token,
                json: ["csr": try Fixtures.csr(), "dnsNames": ["evil.com"]])
            #expect(answer.status == 403)
            #expect(answer.json["errors"] as? [String] == ["evil.com"])
        }
        let event = try #require(try await service.server.ledger.auditEvents().first)
        #expect(event.outcome == .refused)
        #expect(event.actor == "token:ci")
        #expect(event.names == ["evil.com"])
        #expect(event.reason?.contains("evil.com") == true)
    }

    @Test("the auditor's listing filters and pages, newest first")
    func listing() async throws {
        let service = try await TestService.make()
        try await service.withClient { client in
            for name in ["a.example.com", "b.example.com", "bookinfo.com"] {
                let answer = try await client.call(
                    .post, "/v1/certificates", token: service.token,
                    json: ["csr": try Fixtures.csr(), "dnsNames": [name]])
                #expect(answer.status == 201)
            }
            let wildcard = try await client.call(
                .post, "/v1/certificates", token: service.token,
                json: ["csr": try Fixtures.csr(), "dnsNames": ["*.example.com"]])
            #expect(wildcard.status == 201)

            let all = try await client.call(.get, "/v1/certificates?limit=2", token: service.auditorToken)
            #expect(all.status == 200)
            let items = try #require(all.json["items"] as? [[String: Any]])
            #expect(items.compactMap { ($0["dnsNames"] as? [String])?.first } == ["*.example.com", "bookinfo.com"])
            let cursor = try #require(all.json["nextCursor"] as? String)
            let next = try await client.call(
                .get, "/v1/certificates?limit=2&cursor=\(cursor)", token: service.auditorToken)
            #expect(
                (next.json["items"] as? [[String: Any]])?.compactMap { ($0["dnsNames"] as? [String])?.first } == [
                    "b.example.com", "a.example.com",
                ])

            let covering = try await client.call(
                .get, "/v1/certificates?dnsName=a.example.com", token: service.auditorToken)
            #expect((covering.json["items"] as? [[String: Any]])?.count == 2)
            let byRequester = try await client.call(
                .get, "/v1/certificates?requester=token:ci&status=valid", token: service.auditorToken)
            #expect((byRequester.json["items"] as? [[String: Any]])?.count == 4)

            #expect(
                try await client.call(.get, "/v1/certificates?limit=1001", token: service.auditorToken).status == 400)
            #expect(
                try await client.call(.get, "/v1/certificates?status=bogus", token: service.auditorToken).status == 400)
            #expect(
                try await client.call(.get, "/v1/certificates?cursor=zzz", token: service.auditorToken).status == 400)
            #expect(try await client.call(.get, "/v1/certificates").status == 401)
            #expect(try await client.call(.get, "/v1/certificates/00ff", token: service.auditorToken).status == 404)
            #expect(try await client.call(.get, "/v1/certificates/not-hex", token: service.auditorToken).status == 400)
        }
    }

    @Test("CA chain, health, readiness and metrics")
    func operations() async throws {
        let service = try await TestService.make()
        try await service.withClient { client in
            let ca = try await client.call(.get, "/v1/ca")
            #expect(ca.status == 200)
            #expect(ca.text.components(separatedBy: "BEGIN CERTIFICATE").count == 3)
            #expect(try await client.call(.get, "/healthz").status == 200)
            let missing = try await client.call(.get, "/v2/nothing")
            #expect(missing.status == 404 && missing.headers[.contentType] == "application/problem+json")
            #expect(missing.json["detail"] as? String == "no resource at GET /v2/nothing")
            let ready = try await client.call(.get, "/readyz")
            #expect(ready.status == 200 && ready.json["ready"] as? Bool == true)

            _ = try await client.call(
                .post, "/v1/certificates", token: service.token,
                json: ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"]])
            _ = try await client.call(.post, "/v1/certificates", token: service.token, json: ["csr": "nope"])
            let metrics = try await client.call(.get, "/metrics")
            #expect(metrics.text.contains(#"signet_issuances_total{outcome="issued"} 1"#))
            #expect(metrics.text.contains(#"signet_issuances_total{outcome="refused"} 1"#))
            #expect(metrics.text.contains("signet_issuance_duration_seconds_bucket"))
            #expect(metrics.text.contains(#"signet_signer_duration_seconds_count{backend="file"} 1"#))
            #expect(metrics.text.contains(#"signet_certificates{status="valid"} 1"#))
            #expect(metrics.text.contains("signet_earliest_expiry_timestamp_seconds"))
        }
    }

    @Test("a caller issuing past its limit gets 429 with Retry-After; others are unaffected; the metrics count it")
    func issuanceRateLimit() async throws {
        let service = try await TestService.make {
            // One token every ~3 hours: however slow the machine, the third issuance finds the bucket empty.
            $0.limits.issuancesPerSecond = 0.0001
            $0.limits.issuanceBurst = 2
        }
        let (other, digest) = APITokens.mint()
        try await service.server.ledger.createToken(
            TokenEntry(
                name: "other", secretSHA256: digest, allowedNames: ["*.example.com"], allowedProfiles: [.server],
                maximumLifetime: .seconds(86_400), createdAt: Date()
            ))
        try await service.withClient { client in
            func issue(_ token: String) async throws -> Answer {
                try await client.call(
                    .post, "/v1/certificates", token: token,
                    json: ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"]])
            }
            #expect(try await issue(service.token).status == 201)
            #expect(try await issue(service.token).status == 201)
            let limited = try await issue(service.token)
            #expect(
                limited.status == 429 && limited.json["type"] as? String == "https://signet.dev/problems/rate-limited",
                "\(limited.text)")
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1, "\(limited.headers)")
            #expect(try await issue(other).status == 201, "the limit is per caller")
            let metrics = try await client.call(.get, "/metrics")
            #expect(metrics.text.contains(#"signet_rate_limited_total{limit="issuance"} 1"#), "\(metrics.text)")
        }
    }

    @Test(
        "after too many failed authentications an address is refused (429) before any credential is looked at, valid ones included"
    )
    func failedAuthenticationLimit() async throws {
        // One failure a minute: the bucket holds one, and refills only after a minute, however slow the machine.
        let service = try await TestService.make { $0.limits.failedAuthenticationsPerMinute = 1 }
        try await service.withClient { client in
            #expect(try await client.call(.get, "/v1/certificates", token: "sgt_guess").status == 401)
            let blocked = try await client.call(.get, "/v1/certificates", token: service.auditorToken)
            #expect(
                blocked.status == 429 && blocked.json["type"] as? String == "https://signet.dev/problems/rate-limited",
                "\(blocked.text)")
            #expect((blocked.json["detail"] as? String ?? "").contains("too many failed authentications"))
            #expect(
                try await client.call(.get, "/metrics").text.contains(
                    #"signet_rate_limited_total{limit="authentication"} 1"#))
        }
    }

    @Test(
        "who may read what: a tenant reads its own issuances only; another's serial is not found; an auditor reads everything"
    )
    func readsAreScoped() async throws {
        let service = try await TestService.make()
        let (other, digest) = APITokens.mint()
        try await service.server.ledger.createToken(
            TokenEntry(
                name: "other", secretSHA256: digest, allowedNames: ["*.other.example"], allowedProfiles: [.server],
                maximumLifetime: .seconds(86_400), createdAt: Date()
            ))
        try await service.withClient { client in
            let mine = try await client.call(
                .post, "/v1/certificates", token: service.token,
                json: ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"]])
            let theirs = try await client.call(
                .post, "/v1/certificates", token: other,
                json: ["csr": try Fixtures.csr(), "dnsNames": ["b.other.example"]])
            let mySerial = try #require(mine.json["serial"] as? String),
                theirSerial = try #require(theirs.json["serial"] as? String)
            func serials(_ answer: Answer) -> [String] {
                (answer.json["items"] as? [[String: Any]] ?? []).compactMap { $0["serial"] as? String }
            }

            #expect(serials(try await client.call(.get, "/v1/certificates", token: service.token)) == [mySerial])
            #expect(
                serials(try await client.call(.get, "/v1/certificates?dnsName=b.other.example", token: service.token))
                    .isEmpty)
            let asked = try await client.call(.get, "/v1/certificates?requester=token:other", token: service.token)
            #expect(
                asked.status == 403 && (asked.json["detail"] as? String ?? "").contains("reads its own certificates"),
                "\(asked.text)")
            #expect(try await client.call(.get, "/v1/certificates/\(theirSerial)", token: service.token).status == 404)
            #expect(try await client.call(.get, "/v1/certificates/\(theirSerial)", token: other).status == 200)
            #expect(try await client.call(.get, "/v1/certificates/\(mySerial)", token: service.token).status == 200)

            #expect(
                Set(serials(try await client.call(.get, "/v1/certificates", token: service.auditorToken))) == [
                    mySerial, theirSerial,
                ])
            #expect(
                try await client.call(.get, "/v1/certificates/\(theirSerial)", token: service.auditorToken).status
                    == 200)
            #expect(
                try await client.call(
                    .post, "/v1/certificates", token: service.auditorToken,
                    json: ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"]]
                ).status == 403,
                "an auditor without names reads, and issues nothing")
        }
    }

    @Test(
        "GET /v1/identity: who Signet takes a token for and what its policy allows; an auditor's; no token is 401; nothing recorded"
    )
    func identity() async throws {
        let service = try await TestService.make()
        try await service.withClient { client in
            let mine = try await client.call(.get, "/v1/identity", token: service.token)
            #expect(mine.status == 200, "\(mine.text)")
            #expect((mine.json["identity"] as? String ?? "").hasPrefix("token:"), "\(mine.text)")
            #expect(
                (mine.json["allow"] as? [String] ?? []).isEmpty == false && mine.json["profiles"] as? [String] != nil,
                "\(mine.text)")
            #expect(
                mine.json["maxDuration"] as? String != nil && mine.json["auditor"] as? Bool == false
                    && mine.json["administrator"] as? Bool == false)
            let auditor = try await client.call(.get, "/v1/identity", token: service.auditorToken)
            #expect(
                auditor.status == 200 && auditor.json["auditor"] as? Bool == true
                    && (auditor.json["allow"] as? [String])?.isEmpty == true, "\(auditor.text)")
            let anonymous = try await client.call(.get, "/v1/identity", token: nil)
            #expect(anonymous.status == 401, "\(anonymous.text)")
            #expect(try await service.server.ledger.certificateCount() == 0)
        }
    }

    @Test(
        "revocation: by the requester or an administrator, idempotent, recorded with its audit event in one transaction; others, bad reasons and expired certificates refused with nothing changed"
    )
    func revocation() async throws {
        let service = try await TestService.make()
        let (other, otherDigest) = APITokens.mint()
        try await service.server.ledger.createToken(
            TokenEntry(
                name: "other", secretSHA256: otherDigest, allowedNames: ["*.other.example"], allowedProfiles: [.server],
                maximumLifetime: .seconds(86_400), createdAt: Date()
            ))
        let (admin, adminDigest) = APITokens.mint()
        try await service.server.ledger.createToken(
            TokenEntry(
                name: "admin", secretSHA256: adminDigest, allowedNames: [], allowedProfiles: [],
                maximumLifetime: .seconds(3600), createdAt: Date(), administrator: true
            ))
        try await service.withClient { client in
            func issue(_ name: String, _ token: String, duration: String = "24h") async throws -> String {
                let answer = try await client.call(
                    .post, "/v1/certificates", token: token,
                    json: ["csr": try Fixtures.csr(), "dnsNames": [name], "duration": duration])
                return try #require(answer.json["serial"] as? String, "\(answer.text)")
            }
            let mine = try await issue("a.example.com", service.token)
            let theirs = try await issue("b.other.example", other)
            func revoke(_ serial: String, _ token: String, _ body: Any = ["reason": "keyCompromise"]) async throws
                -> Answer
            {
                try await client.call(.post, "/v1/certificates/\(serial)/revoke", token: token, json: body)
            }
            func events() async throws -> Int {
                try await service.server.ledger.auditEvents(limit: 1000).filter { $0.action == "certificate.revoke" }
                    .count
            }

            let foreign = try await revoke(theirs, service.token)
            #expect(foreign.status == 404, "another tenant's serial is not found: \(foreign.text)")
            let auditorTry = try await revoke(mine, service.auditorToken)
            #expect(
                auditorTry.status == 403 && (auditorTry.json["type"] as? String ?? "").hasSuffix("not-yours"),
                "auditors read; they do not revoke: \(auditorTry.text)")
            let badReason = try await revoke(mine, service.token, ["reason": "cACompromise"])
            #expect(badReason.status == 400, "\(badReason.text)")
            #expect(try await revoke("zz", service.token).status == 400)
            #expect(try await revoke("0123abcd", service.token).status == 404)
            #expect(try await events() == 0, "nothing was revoked yet")

            let revoked = try await revoke(mine, service.token)
            #expect(revoked.status == 200, "\(revoked.text)")
            #expect(
                revoked.json["status"] as? String == "revoked"
                    && revoked.json["revocationReason"] as? String == "keyCompromise")
            let revokedAt = try #require(revoked.json["revokedAt"] as? String)
            let again = try await revoke(mine, service.token, ["reason": "superseded"])
            #expect(
                again.status == 200 && again.json["revokedAt"] as? String == revokedAt
                    && again.json["revocationReason"] as? String == "keyCompromise",
                "revoking twice answers the first revocation")
            #expect(try await events() == 1)
            let shown = try await client.call(.get, "/v1/certificates/\(mine)", token: service.token)
            #expect(shown.json["status"] as? String == "revoked" && shown.json["revokedAt"] as? String == revokedAt)
            let listed = try await client.call(.get, "/v1/certificates?status=revoked", token: service.token)
            #expect((listed.json["items"] as? [[String: Any]])?.compactMap { $0["serial"] as? String } == [mine])

            let byAdmin = try await revoke(theirs, admin, [:])
            #expect(
                byAdmin.status == 200 && byAdmin.json["revocationReason"] as? String == "unspecified", "\(byAdmin.text)"
            )
            let event = try #require(
                try await service.server.ledger.auditEvents(limit: 1000).first {
                    $0.action == "certificate.revoke" && $0.subject == theirs
                })
            #expect(event.actor == "token:admin" && event.reason == "unspecified")
        }

        // An expired certificate: recorded directly with a past validity, as one issued long ago.
        let entry = CertificateEntry(
            serial: "7f00000000000000000000000000000000000001", issuerKeyID: "k", subject: "CN=old.example.com",
            dnsNames: ["old.example.com"], ipAddresses: [],
            publicKeySHA256: "p", csrSHA256: "c", profile: .server, notBefore: Date().addingTimeInterval(-7200),
            notAfter: Date().addingTimeInterval(-3600),
            requester: "token:ci", issuedAt: Date().addingTimeInterval(-7200), der: [1]
        )
        try await service.server.ledger.record(
            entry,
            event: AuditEvent(
                at: entry.issuedAt, actor: "token:ci", action: "certificate.issue", outcome: .success,
                subject: entry.serial))
        try await service.withClient { client in
            let expired = try await client.call(
                .post, "/v1/certificates/\(entry.serial)/revoke", token: service.token, json: ["reason": "superseded"])
            #expect(
                expired.status == 409 && (expired.json["type"] as? String ?? "").hasSuffix("certificate-expired"),
                "\(expired.text)")
        }
        #expect(try await service.server.ledger.certificate(serial: entry.serial)?.storedStatus == .valid)
    }

    @Test("readiness fails when the ledger cannot be written")
    func notReady() async throws {
        let service = try await TestService.make()
        try await service.server.ledger.close()
        try await service.withClient { client in
            let ready = try await client.call(.get, "/readyz")
            #expect(ready.status == 503)
            #expect((ready.json["ledger"] as? String)?.hasPrefix("failing") == true)
        }
    }
}

/// The catalogue of malformed requests the issue lists, each with the status and the words its problem must carry.
struct BadRequest: Sendable, CustomTestStringConvertible {
    enum Credentials: Sendable { case valid, none, unknown, revoked, auditor }

    let name: String
    let status: Int
    let detail: String
    var credentials: Credentials = .valid
    var body: Body = { [:] }
    var raw: String?

    typealias Body = @Sendable () throws -> [String: any Sendable]

    var testDescription: String { name }

    func json() throws -> [String: Any]? {
        guard raw == nil else { return nil }
        let fields: [String: any Sendable] = try body()
        return fields.mapValues { $0 as Any }
    }

    static let longName: String = String(repeating: "a.", count: 121) + "examples.com"
    static let oversized: String = #"{"csr":""# + String(repeating: "A", count: 70_000) + #""}"#

    static let all: [BadRequest] = csrProblems + nameProblems + otherProblems

    static let csrProblems: [BadRequest] = [
        BadRequest(
            name: "garbage PEM", status: 400, detail: "not PEM",
            body: { () throws -> [String: any Sendable] in
                ["csr": "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!!\n-----END CERTIFICATE REQUEST-----"]
            }),
        BadRequest(
            name: "a certificate where a CSR belongs", status: 400,
            detail: "CERTIFICATE where a CERTIFICATE REQUEST belongs",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Broken.certificatePEM()]
            }),
        BadRequest(
            name: "broken CSR signature", status: 400, detail: "does not verify",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Broken.signature(try Fixtures.csr(dnsNames: ["a.example.com"]))]
            }),
        BadRequest(
            name: "RSA-1024", status: 400, detail: "RSA-1024",
            body: { () throws -> [String: any Sendable] in ["csr": try Broken.opensslCSR(["-newkey", "rsa:1024"])] }),
        BadRequest(
            name: "P-224", status: 400, detail: "P-224",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Broken.opensslCSR(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-224"])]
            }),
    ]

    static let nameProblems: [BadRequest] = [
        BadRequest(
            name: "101 names", status: 400, detail: "101 names requested; a certificate may carry at most 100",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Fixtures.csr(), "dnsNames": (0...100).map { "n\($0).example.com" }]
            }),
        BadRequest(
            name: "name with a space", status: 400, detail: "contains a space",
            body: { () throws -> [String: any Sendable] in ["csr": try Fixtures.csr(), "dnsNames": ["a b.example.com"]]
            }),
        BadRequest(
            name: "underscore", status: 400, detail: "underscore",
            body: { () throws -> [String: any Sendable] in ["csr": try Fixtures.csr(), "dnsNames": ["a_b.example.com"]]
            }),
        BadRequest(
            name: "empty label", status: 400, detail: "empty label",
            body: { () throws -> [String: any Sendable] in ["csr": try Fixtures.csr(), "dnsNames": ["a..example.com"]] }
        ),
        BadRequest(
            name: "254 characters", status: 400, detail: "254 characters long",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Fixtures.csr(), "dnsNames": [longName]]
            }),
        BadRequest(
            name: "wildcard not left-most", status: 400, detail: "wildcard that is not the whole left-most label",
            body: { () throws -> [String: any Sendable] in ["csr": try Fixtures.csr(), "dnsNames": ["a.*.example.com"]]
            }),
        BadRequest(
            name: "CA:true requested", status: 400, detail: "certificate-authority rights",
            body: { () throws -> [String: any Sendable] in
                [
                    "csr": try Fixtures.csr(
                        dnsNames: ["a.example.com"],
                        extraExtensions: [
                            try Certificate.Extension(
                                BasicConstraints.isCertificateAuthority(maxPathLength: 0), critical: true)
                        ])
                ]
            }),
    ]

    static let otherProblems: [BadRequest] = [
        BadRequest(
            name: "duration zero", status: 400, detail: "must be positive",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"], "duration": "0s"]
            }),
        BadRequest(
            name: "duration negative", status: 400, detail: "must be positive",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"], "duration": "-24h"]
            }),
        BadRequest(
            name: "duration too long", status: 400, detail: "exceeds the maximum",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"], "duration": "P91D"]
            }),
        BadRequest(
            name: "duration malformed", status: 400, detail: "unknown unit",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"], "duration": "3 weeks"]
            }),
        BadRequest(
            name: "missing token", status: 401, detail: "no credentials", credentials: .none,
            body: { () throws -> [String: any Sendable] in ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"]] }),
        BadRequest(
            name: "unknown token", status: 401, detail: "not known", credentials: .unknown,
            body: { () throws -> [String: any Sendable] in ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"]] }),
        BadRequest(
            name: "revoked token", status: 401, detail: "revoked", credentials: .revoked,
            body: { () throws -> [String: any Sendable] in ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"]] }),
        BadRequest(
            name: "read-only token", status: 403, detail: "may read the ledger", credentials: .auditor,
            body: { () throws -> [String: any Sendable] in ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"]] }),
        BadRequest(
            name: "names outside policy", status: 403, detail: "'evil.example.org', 'a.b.example.com'",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Fixtures.csr(), "dnsNames": ["evil.example.org", "ok.example.com", "a.b.example.com"]]
            }),
        BadRequest(name: "oversized body", status: 413, detail: "limited to 65536 bytes", raw: oversized),
        BadRequest(
            name: "unknown JSON field", status: 400, detail: "unknown field 'dnsname'",
            body: { () throws -> [String: any Sendable] in ["csr": try Fixtures.csr(), "dnsname": ["a.example.com"]] }),
        BadRequest(name: "not JSON", status: 400, detail: "not valid JSON", raw: "{csr:"),
        BadRequest(
            name: "missing csr", status: 400, detail: "'csr' is missing",
            body: { () throws -> [String: any Sendable] in ["dnsNames": ["a.example.com"]] }),
        BadRequest(
            name: "wrong type", status: 400, detail: "wrong type",
            body: { () throws -> [String: any Sendable] in ["csr": 42] }),
        BadRequest(
            name: "unknown profile", status: 400, detail: "profile",
            body: { () throws -> [String: any Sendable] in
                ["csr": try Fixtures.csr(), "dnsNames": ["a.example.com"], "profile": "ca"]
            }),
    ]
}

func PEMDocumentBytes(_ pem: String) throws -> [UInt8] {
    try PEMDocument(pemString: pem).derBytes
}

/// Inputs that are wrong in one precise way.
enum Broken {
    /// A CSR whose signature no longer matches its contents.
    static func signature(_ pem: String) throws -> String {
        var der = try PEMDocumentBytes(pem)
        der[der.count - 5] ^= 0x01
        return PEMDocument(type: "CERTIFICATE REQUEST", derBytes: der).pemString
    }

    /// A CSR made by openssl with a key Signet must refuse.
    static func opensslCSR(_ keyArguments: [String]) throws -> String {
        let made = try Tool.run(
            "openssl",
            ["req", "-new"] + keyArguments + ["-nodes", "-keyout", "/dev/null", "-subj", "/CN=a.example.com"])
        guard made.succeeded else { throw Tool.ToolMissing(name: "openssl (\(made.error))") }
        return made.output
    }

    /// A self-signed certificate, sent where a CSR belongs.
    static func certificatePEM() throws -> String {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("a.example.com") }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: Date(),
            notValidAfter: Date().addingTimeInterval(3600), issuer: name, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions(), issuerPrivateKey: .init(key)
        )
        return try certificate.serializeAsPEM().pemString
    }
}

extension Ledger {
    /// Every certificate the ledger holds, whatever its status.
    func certificateCount() async throws -> Int {
        try await summary(now: Date()).counts.values.reduce(0, +)
    }
}
