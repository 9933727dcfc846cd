import Crypto
import Foundation
import GRDB
import SignetACME
import SignetAuthority
import SwiftASN1
import Testing
import X509
import _CryptoExtras

/// Signet's ACME server spoken to at the wire level (RFC 8555, 8738, 9773): the headers and status codes each client
/// depends on, the state machines, EAB, key change, ARI, revocation, and a catalogue of bad requests, each answered
/// with its ACME error type, a fresh nonce, and nothing recorded.
@Suite("ACME: the protocol on the wire", .serialized)
struct ACMEProtocolTests {
    /// One `signet serve` for the suite, with a directory for each policy under test.
    final class Fixture: Sendable {
        let server: ServerProcess
        let configuration: String

        init() throws {
            let directory = try Fixtures.temporaryDirectory("signet-acme")
            configuration = directory + "/signet.yaml"
            try """
            acme:
              httpPort: \(try freePort())
              tlsPort: \(try freePort())
              validationTimeoutSeconds: 2
              directories:
                - name: open
                  allow: ["**.acme.test", "127.0.0.1"]
                - name: fast
                  allow: ["**.acme.test", "127.0.0.1"]
                  alwaysValid: true
                  profiles: [server, server-client]
                  maxDuration: 30d
                  website: https://ca.acme.test
                  caaIdentities: [ca.acme.test]
                - name: httponly
                  allow: ["**.acme.test"]
                  challenges: [http-01]
                - name: eab
                  allow: ["**.acme.test"]
                  externalAccountRequired: true
                  alwaysValid: true
                - name: internal
                  allow: ["**.svc.cluster.local"]
                  trustedNames: ["**.svc.cluster.local"]
                  challenges: [dns-01]
            """.write(toFile: configuration, atomically: true, encoding: .utf8)
            server = try ServerProcess(dataDirectory: directory + "/data", arguments: ["--config", configuration])
        }

        func client(_ directory: String, key: JWSSigner.Key = .p256(P256.Signing.PrivateKey())) async throws
            -> ACMETestClient
        {
            try await ACMETestClient(server: server, directory: directory, key: key)
        }

        func ledger<T: Sendable>(_ read: @Sendable (Database) throws -> T) throws -> T {
            var configuration = Configuration()
            configuration.readonly = true
            return try DatabaseQueue(path: server.dataDirectory + "/ledger.sqlite", configuration: configuration).read(
                read)
        }

        func certificateCount() throws -> Int {
            try ledger { try Int.fetchOne($0, sql: "SELECT count(*) FROM certificates") ?? 0 }
        }

        func signet(_ arguments: [String]) throws -> Tool.Result {
            try server.signet(arguments + ["--config", configuration])
        }
    }

    static let shared = Result { try Fixture() }

    var fixture: Fixture {
        get throws { try Self.shared.get() }
    }

    /// Issues through the always-valid directory: account, order, challenge, finalize. Returns the final order.
    func issue(_ client: ACMETestClient, _ names: [String], extra: [String: Any] = [:]) async throws -> [String: Any] {
        if client.accountURL.value == nil { try await client.register() }
        let order = try await client.order(names, extra: extra)
        #expect(order.status == 201, "\(order.text)")
        try await client.authorize(order)
        let finalize = try await client.post(
            order.json["finalize"] as? String ?? "", ["csr": try ACMETestClient.csr(names)])
        #expect(finalize.status == 200, "\(finalize.text)")
        return finalize.json
    }

    @Test("directory, newNonce by HEAD (200) and GET (204), Replay-Nonce and Link rel=index on every answer")
    func directoryAndNonces() async throws {
        let client = try await fixture.client("fast")
        for name in ["newNonce", "newAccount", "newOrder", "revokeCert", "keyChange", "renewalInfo"] {
            #expect(
                (client.directory[name] as? String)?.hasPrefix(try fixture.server.url + "/acme/fast/") == true,
                "\(name)")
        }
        let meta = client.directory["meta"] as? [String: Any] ?? [:]
        #expect(meta["externalAccountRequired"] as? Bool == false)
        #expect((meta["profiles"] as? [String: String])?.keys.sorted() == ["server", "server-client"])
        #expect(meta["website"] as? String == "https://ca.acme.test")
        #expect(meta["caaIdentities"] as? [String] == ["ca.acme.test"])
        #expect(client.directory["newAuthz"] == nil)

        let head = try await client.raw("HEAD", client.url("newNonce"))
        #expect(head.status == 200)
        let get = try await client.raw("GET", client.url("newNonce"))
        #expect(get.status == 204)
        for reply in [head, get] {
            #expect(reply.header("Cache-Control") == "no-store")
            #expect(reply.header("Link") == "<\(client.directoryURL)>;rel=\"index\"")
            let nonce = try #require(reply.header("Replay-Nonce"))
            #expect(Base64URL.decode(nonce) != nil && !nonce.contains("="), "certbot base64url-decodes nonces")
        }
        #expect(head.header("Replay-Nonce") != get.header("Replay-Nonce"))
        let unknown = try await client.raw("GET", try fixture.server.url + "/acme/fast/no-such-thing")
        #expect(unknown.status == 404 && unknown.problemType == "malformed" && unknown.header("Replay-Nonce") != nil)
        let noDirectory = try await client.raw("GET", try fixture.server.url + "/acme/nowhere/directory")
        #expect(noDirectory.status == 404 && noDirectory.problemType == "malformed")
    }

    @Test(
        "cert-manager's flow with an RSA-2048 (RS256) account: 201/200 accounts, exactly 201 orders, Link up, finalize Location, PEM chain"
    )
    func certManagerFlow() async throws {
        let client = try await fixture.client("fast", key: .rsa(try _RSA.Signing.PrivateKey(keySize: .bits2048)))
        let missing = try await client.post(client.url("newAccount"), ["onlyReturnExisting": true], useJWK: true)
        #expect(missing.status == 400 && missing.problemType == "accountDoesNotExist")
        let created = try await client.register([
            "termsOfServiceAgreed": true, "contact": ["mailto:platform@acme.test"],
        ])
        #expect(created.status == 201)
        #expect(created.json["status"] as? String == "valid")
        let accountURL = try #require(created.location)
        let again = try await client.register()
        #expect(again.status == 200 && again.location == accountURL)
        let existing = try await client.post(client.url("newAccount"), ["onlyReturnExisting": true], useJWK: true)
        #expect(existing.status == 200 && existing.location == accountURL)

        let names = ["gw.acme.test", "api.acme.test"]
        let order = try await client.order(names)
        #expect(order.status == 201)
        let orderURL = try #require(order.location)
        #expect(order.json["status"] as? String == "pending")
        #expect(order.header("Replay-Nonce") != nil)
        let authorizations = try #require(order.json["authorizations"] as? [String])
        #expect(authorizations.count == 2)
        let authz = try await client.post(authorizations[0], nil)
        #expect(authz.json["status"] as? String == "pending")
        #expect(authz.header("Retry-After") != nil)
        let challenges = try #require(authz.json["challenges"] as? [[String: Any]])
        #expect(Set(challenges.compactMap { $0["type"] as? String }) == ["http-01", "dns-01", "tls-alpn-01"])
        let challengeURL = try #require(challenges.first?["url"] as? String)
        let answer = try await client.post(challengeURL, [:])
        #expect(answer.status == 200)
        #expect(answer.header("Link") == "<\(authorizations[0])>;rel=\"up\"")
        #expect(answer.location == challengeURL)
        try await client.authorize(order)

        let ready = try await client.post(orderURL, nil)
        #expect(ready.json["status"] as? String == "ready")
        #expect(ready.location == orderURL)
        let before = try fixture.certificateCount()
        let finalized = try await client.post(
            ready.json["finalize"] as? String ?? "", ["csr": try ACMETestClient.csr(names, commonName: names[0])])
        #expect(finalized.status == 200)
        #expect(finalized.location == orderURL)
        #expect(finalized.json["status"] as? String == "valid")
        let certificateURL = try #require(finalized.json["certificate"] as? String)
        #expect(try fixture.certificateCount() == before + 1)

        let download = try await client.post(certificateURL, nil)
        #expect(download.status == 200)
        #expect(download.header("Content-Type") == "application/pem-certificate-chain")
        let blocks = download.text.components(separatedBy: "-----BEGIN CERTIFICATE-----").count - 1
        #expect(blocks == 2, "leaf and intermediate")
        let chainFile = try Fixtures.temporaryDirectory("acme-chain") + "/chain.pem"
        try download.text.write(toFile: chainFile, atomically: true, encoding: .utf8)
        let verify = try Tool.run(
            "openssl", ["verify", "-CAfile", try fixture.server.rootCertificate, "-untrusted", chainFile, chainFile])
        #expect(verify.succeeded, "\(verify.output) \(verify.error)")

        let serial = try #require(certificateURL.split(separator: "/").last.map(String.init))
        let accountID = try #require(accountURL.split(separator: "/").last.map(String.init))
        let requester = try fixture.ledger {
            try String.fetchOne($0, sql: "SELECT requester FROM certificates WHERE serial = ?", arguments: [serial])
        }
        #expect(requester == "acme:fast/\(accountID)")
        let orders = try await client.post(accountURL + "/orders", nil)
        #expect((orders.json["orders"] as? [String])?.contains(orderURL) == true)
    }

    @Test("a nonce handed out before a restart is accepted once after it")
    func noncesSurviveRestart() async throws {
        let directory = try Fixtures.temporaryDirectory("signet-acme-restart")
        let configuration = directory + "/signet.yaml"
        try "acme:\n  directories:\n    - name: fast\n      allow: [\"**.acme.test\"]\n      alwaysValid: true\n".write(
            toFile: configuration, atomically: true, encoding: .utf8)
        let port = try freePort()
        var server = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", configuration], port: port)
        var client = try await ACMETestClient(server: server, directory: "fast", key: .p256(P256.Signing.PrivateKey()))
        let nonce = try await client.nonce()
        server.stop()
        server = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", configuration], port: port)
        client = try await ACMETestClient(server: server, directory: "fast", key: client.signer.key)
        let first = try await client.post(
            client.url("newAccount"), ["termsOfServiceAgreed": true], useJWK: true, nonce: nonce)
        #expect(first.status == 201, "\(first.text)")
        let second = try await client.post(
            client.url("newAccount"), ["termsOfServiceAgreed": true], useJWK: true, nonce: nonce)
        #expect(second.status == 400 && second.problemType == "badNonce")
        server.stop()
    }

    @Test(
        "an account past its issuance rate gets rateLimited (429) with Retry-After and a fresh nonce, and its order stays ready"
    )
    func rateLimited() async throws {
        let directory = try Fixtures.temporaryDirectory("signet-acme-limits")
        try "acme:\n  directories:\n    - name: fast\n      allow: [\"**.acme.test\"]\n      alwaysValid: true\n".write(
            to: directory + "/signet.yaml")
        let server = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", directory + "/signet.yaml"],
            environment: ["SIGNET_LIMIT_ISSUANCES_PER_SECOND": "0.0001", "SIGNET_LIMIT_ISSUANCE_BURST": "1"])
        let client = try await ACMETestClient(server: server, directory: "fast", key: .p256(P256.Signing.PrivateKey()))
        try await client.register()
        for (index, expected) in [200, 429].enumerated() {
            let name = "limit\(index).acme.test"
            let order = try await client.order([name])
            try await client.authorize(order)
            let finalized = try await client.post(
                order.json["finalize"] as? String ?? "", ["csr": try ACMETestClient.csr([name])])
            #expect(finalized.status == expected, "\(finalized.text)")
            if expected == 429 {
                #expect(finalized.problemType == "rateLimited" && Int(finalized.header("Retry-After") ?? "") ?? 0 > 0)
                #expect(finalized.header("Replay-Nonce") != nil)
                let again = try await client.post(order.location ?? "", nil)
                #expect(again.json["status"] as? String == "ready")
            }
        }
        server.stop()
    }

    @Test(
        "a validation interrupted by kill -9 is resumed at the next start: the authorization does not stay pending forever"
    )
    func validationsResume() async throws {
        let directory = try Fixtures.temporaryDirectory("signet-acme-resume")
        let configuration = directory + "/signet.yaml"
        // Nothing listens on the http-01 port, so the validation fails, after the timeout, once it runs.
        try """
        acme:
          httpPort: \(try freePort())
          validationTimeoutSeconds: 2
          directories:
            - name: open
              allow: ["**.acme.test"]
              challenges: [http-01]
        """.write(to: configuration)
        let port = try freePort()
        var server = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", configuration], port: port)
        let client = try await ACMETestClient(server: server, directory: "open", key: .p256(P256.Signing.PrivateKey()))
        try await client.register()
        // A name that does not resolve makes the validator wait on DNS as well; 127.0.0.1 answers at once.
        let order = try await client.order(["localhost.acme.test"])
        let authorizationURL = try #require((order.json["authorizations"] as? [String])?.first)
        let authorization = try await client.post(authorizationURL, nil)
        let challenge = try #require((authorization.json["challenges"] as? [[String: Any]])?.first?["url"] as? String)
        let answer = try await client.post(challenge, [:])
        #expect(answer.json["status"] as? String == "processing")
        server.kill(signal: SIGKILL)
        server.process.waitUntilExit()
        server = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", configuration], port: port)
        let resumed = try await ACMETestClient(server: server, directory: "open", key: client.signer.key)
        try await resumed.register()
        let settled = try await resumed.poll(authorizationURL) { $0["status"] as? String != "pending" }
        #expect(settled["status"] as? String == "invalid", "\(settled)")
        server.stop()
    }

    @Test("bad requests: each gets its ACME error type and status, a fresh nonce, and records nothing")
    func badInputCatalogue() async throws {
        let fixture = try fixture
        let client = try await fixture.client("fast")
        try await client.register()
        let url = client.url("newOrder")
        let identifiers: [String: Any] = ["identifiers": [["type": "dns", "value": "bad.acme.test"]]]
        let payload = try JSONSerialization.data(withJSONObject: identifiers)
        let kid = client.accountURL.value
        let before = try fixture.certificateCount()
        let ordersBefore = try fixture.ledger { try Int.fetchOne($0, sql: "SELECT count(*) FROM acme_orders") ?? 0 }
        let spent = try await client.nonce()
        _ = try await client.post(client.url("newAccount"), ["onlyReturnExisting": true], useJWK: true, nonce: spent)

        func expectProblem(_ reply: ACMETestClient.Reply, _ type: String, _ status: Int, _ label: String) {
            #expect(reply.problemType == type, "\(label): \(reply.text)")
            #expect(reply.status == status, "\(label): \(reply.status)")
            #expect(reply.header("Content-Type") == "application/problem+json", "\(label)")
            #expect(reply.header("Replay-Nonce") != nil, "\(label): every error carries a fresh nonce")
        }
        func signed(
            _ extra: [String: Any] = [:], nonce: String? = nil, url overrideURL: String? = nil, keyID: String?? = .none
        ) async throws -> Data {
            var chosen = nonce
            if chosen == nil { chosen = try await client.nonce() }
            return try client.signer.sign(
                payload: payload, url: overrideURL ?? url, nonce: chosen, keyID: keyID ?? kid, extraHeader: extra)
        }

        let unknownNonce = try await client.raw(
            "POST", url, body: try await signed(nonce: Base64URL.encode(Array(repeating: UInt8(7), count: 32))))
        expectProblem(unknownNonce, "badNonce", 400, "unknown nonce")
        #expect(
            (unknownNonce.json["detail"] as? String)?.hasPrefix("JWS has an invalid anti-replay nonce") == true,
            "acme.sh matches this text")
        expectProblem(
            try await client.raw("POST", url, body: try await signed(nonce: spent)), "badNonce", 400, "reused nonce")
        expectProblem(try await client.post(url, identifiers, omitNonce: true), "badNonce", 400, "missing nonce")
        expectProblem(
            try await client.raw("POST", url, body: try await signed(url: url + "x")), "unauthorized", 403,
            "url mismatch")
        expectProblem(
            try await client.raw("POST", url, body: try await signed(["jwk": client.signer.publicJWK.json])),
            "malformed", 400, "jwk and kid together")
        expectProblem(
            try await client.raw(
                "POST", url,
                body: try await signed(
                    keyID: .some(
                        client.url("newAccount").replacingOccurrences(of: "new-account", with: "account/nobody")))),
            "accountDoesNotExist", 400, "unknown kid")
        var tampered = try JSONSerialization.jsonObject(with: try await signed()) as! [String: String]
        tampered["signature"] = Base64URL.encode(Array(repeating: UInt8(1), count: 64))
        expectProblem(
            try await client.raw("POST", url, body: try JSONSerialization.data(withJSONObject: tampered)), "malformed",
            400, "bad signature")
        expectProblem(
            try await client.raw("POST", url, body: try await signed(["alg": "none"])), "badSignatureAlgorithm", 400,
            "alg none")
        expectProblem(
            try await client.raw("POST", url, body: try await signed(["alg": "HS256"])), "badSignatureAlgorithm", 400,
            "alg HS256")
        expectProblem(
            try await client.raw("POST", url, body: Data(repeating: 0x41, count: 70 * 1024)), "malformed", 413,
            "oversized body")
        expectProblem(
            try await client.raw("POST", url, body: try await signed(), contentType: "application/json"), "malformed",
            415, "wrong content type")
        expectProblem(try await client.raw("POST", url, body: Data("not json".utf8)), "malformed", 400, "not a JWS")

        let outside = try await client.order(["bad.example.com"])
        expectProblem(outside, "rejectedIdentifier", 400, "identifier outside the directory's policy")
        let two = try await client.order(["one.example.com", "two.example.org"])
        expectProblem(two, "rejectedIdentifier", 400, "two identifiers outside policy")
        #expect(
            (two.json["subproblems"] as? [[String: Any]])?.compactMap {
                ($0["identifier"] as? [String: Any])?["value"] as? String
            } == ["one.example.com", "two.example.org"])
        expectProblem(
            try await client.order(["ok.acme.test"], extra: ["profile": "codesigning"]), "invalidProfile", 400,
            "unknown profile")
        expectProblem(
            try await client.post(url, ["identifiers": [["type": "email", "value": "a@acme.test"]]]),
            "unsupportedIdentifier", 400, "email identifier")

        let http = try await fixture.client("httponly")
        try await http.register()
        expectProblem(
            try await http.order(["*.wild.acme.test"]), "rejectedIdentifier", 400,
            "wildcard where only http-01 is offered")

        let open = try await fixture.client("open")
        try await open.register()
        let pending = try await open.order(["pending.acme.test"])
        #expect(pending.status == 201)
        expectProblem(
            try await open.post(
                pending.json["finalize"] as? String ?? "", ["csr": try ACMETestClient.csr(["pending.acme.test"])]),
            "orderNotReady", 403, "finalize before ready")

        let ready = try await client.order(["csr.acme.test"])
        try await client.authorize(ready)
        let finalize = ready.json["finalize"] as? String ?? ""
        expectProblem(
            try await client.post(finalize, ["csr": try ACMETestClient.csr(["csr.acme.test", "extra.acme.test"])]),
            "badCSR", 400, "CSR names differ")
        expectProblem(
            try await client.post(
                finalize, ["csr": try ACMETestClient.csr(["csr.acme.test"], commonName: "other.acme.test")]), "badCSR",
            400, "CSR CN not in the order")
        guard case .p256(let accountKey) = client.signer.key else { return }
        expectProblem(
            try await client.post(finalize, ["csr": try ACMETestClient.csr(["csr.acme.test"], key: .init(accountKey))]),
            "badCSR", 400, "CSR key is the account key")
        expectProblem(try await client.post(finalize, ["csr": "!!"]), "malformed", 400, "CSR not base64url")
        let stillReady = try await client.post(ready.location ?? "", nil)
        #expect(stillReady.json["status"] as? String == "ready", "a refused CSR leaves the order ready for a good one")

        let other = try await fixture.client("fast")
        try await other.register()
        expectProblem(try await other.post(ready.location ?? "", nil), "unauthorized", 403, "another account's order")

        #expect(try fixture.certificateCount() == before, "no bad request recorded a certificate")
        let ordersAfter = try fixture.ledger { try Int.fetchOne($0, sql: "SELECT count(*) FROM acme_orders") ?? 0 }
        #expect(ordersAfter == ordersBefore + 2, "only the two well-formed orders were recorded")

        let gone = try await fixture.client("fast")
        try await gone.register()
        let deactivated = try await gone.post(gone.accountURL.value ?? "", ["status": "deactivated"])
        #expect(deactivated.status == 200 && deactivated.json["status"] as? String == "deactivated")
        expectProblem(try await gone.order(["late.acme.test"]), "unauthorized", 403, "deactivated account")
        expectProblem(try await gone.register(), "unauthorized", 403, "newAccount with a deactivated key")
    }

    @Test(
        "External Account Binding: required, bound to the key's names and label, refused with a wrong MAC, an unknown key id, or once revoked"
    )
    func externalAccountBinding() async throws {
        let fixture = try fixture
        let created = try fixture.signet([
            "acme", "eab", "create", "--directory", "eab", "--allow", "*.team-a.acme.test", "--name", "team-a",
        ])
        #expect(created.succeeded, "\(created.error)")
        let keyID = try #require(
            created.output.split(separator: "\n").first { $0.hasPrefix("key id:") }?.split(separator: " ").last.map(
                String.init))
        let mac = try #require(
            created.output.split(separator: "\n").first { $0.hasPrefix("hmac key:") }?.split(separator: " ").last.map(
                String.init))
        let macKey = try #require(Base64URL.decode(mac).map(Array.init))

        let client = try await fixture.client("eab")
        #expect((client.directory["meta"] as? [String: Any])?["externalAccountRequired"] as? Bool == true)
        let without = try await client.register()
        #expect(without.status == 403 && without.problemType == "externalAccountRequired", "\(without.text)")
        let url = client.url("newAccount")
        let wrongMAC = try await client.register([
            "externalAccountBinding": try client.signer.externalAccountBinding(
                keyID: keyID, macKey: Array(repeating: 1, count: 32), url: url)
        ])
        #expect(wrongMAC.status == 403 && wrongMAC.problemType == "unauthorized")
        let unknown = try await client.register([
            "externalAccountBinding": try client.signer.externalAccountBinding(
                keyID: "kid-nobody", macKey: macKey, url: url)
        ])
        #expect(unknown.status == 403 && unknown.problemType == "unauthorized")
        let otherKey = try JWSSigner(.p256(P256.Signing.PrivateKey()))
        let stolen = try await client.register([
            "externalAccountBinding": try otherKey.externalAccountBinding(keyID: keyID, macKey: macKey, url: url)
        ])
        #expect(stolen.status == 403 && stolen.problemType == "unauthorized", "a binding of another key")

        let bound = try await client.register([
            "externalAccountBinding": try client.signer.externalAccountBinding(keyID: keyID, macKey: macKey, url: url)
        ])
        #expect(bound.status == 201, "\(bound.text)")
        let accountID = try #require(bound.location?.split(separator: "/").last.map(String.init))
        let outside = try await client.order(["b.team-b.acme.test"])
        #expect(
            outside.status == 400 && outside.problemType == "rejectedIdentifier",
            "the key's names narrow the directory's")
        let final = try await issue(client, ["gw.team-a.acme.test"])
        let serial = try #require((final["certificate"] as? String)?.split(separator: "/").last.map(String.init))
        let requester = try fixture.ledger {
            try String.fetchOne($0, sql: "SELECT requester FROM certificates WHERE serial = ?", arguments: [serial])
        }
        #expect(requester == "acme:eab/team-a/\(accountID)")

        let listed = try fixture.signet(["acme", "eab", "list"])
        #expect(listed.output.contains(keyID) && listed.output.contains("team-a") && !listed.output.contains(mac))
        let accounts = try fixture.signet(["acme", "accounts", "list", "--directory", "eab"])
        #expect(accounts.output.contains("acme:eab/team-a/\(accountID)"))
        #expect(try fixture.signet(["acme", "eab", "revoke", keyID]).succeeded)
        // Accounts are cached for the token cache time (1 s), like API tokens: the revocation shows within it.
        var afterRevocation = try await client.order(["late.team-a.acme.test"])
        for _ in 0..<30 where afterRevocation.status == 201 {
            try await Task.sleep(for: .milliseconds(100))
            afterRevocation = try await client.order(["late.team-a.acme.test"])
        }
        #expect(afterRevocation.status == 403 && afterRevocation.problemType == "unauthorized")
        let newcomer = try await fixture.client("eab")
        let refused = try await newcomer.register([
            "externalAccountBinding": try newcomer.signer.externalAccountBinding(keyID: keyID, macKey: macKey, url: url)
        ])
        #expect(refused.status == 403)
    }

    @Test("trusted names are authorized without a challenge, and the ledger records that they were")
    func trustedNames() async throws {
        let client = try await fixture.client("internal")
        try await client.register()
        let order = try await client.order(["api.payments.svc.cluster.local"])
        #expect(order.status == 201 && order.json["status"] as? String == "ready", "\(order.text)")
        let authz = try await client.post((order.json["authorizations"] as? [String])?.first ?? "", nil)
        #expect(authz.json["status"] as? String == "valid")
        let final = try await client.post(
            order.json["finalize"] as? String ?? "", ["csr": try ACMETestClient.csr(["api.payments.svc.cluster.local"])]
        )
        #expect(final.json["status"] as? String == "valid")
        let events = try fixture.ledger {
            try Int.fetchOne(
                $0,
                sql:
                    "SELECT count(*) FROM audit_events WHERE action = 'acme.authorization.trusted' AND names LIKE '%api.payments.svc.cluster.local%'"
            ) ?? 0
        }
        #expect(events == 1)
        let outsideTrust = try await client.order(["api.acme.test"])
        #expect(outsideTrust.problemType == "rejectedIdentifier")
    }

    @Test("authorizations are reused within an account, never across accounts")
    func authorizationReuse() async throws {
        let client = try await fixture.client("fast")
        _ = try await issue(client, ["reuse.acme.test"])
        let second = try await client.order(["reuse.acme.test"])
        #expect(second.status == 201 && second.json["status"] as? String == "ready")
        let stranger = try await fixture.client("fast")
        try await stranger.register()
        let third = try await stranger.order(["reuse.acme.test"])
        #expect(third.json["status"] as? String == "pending")
    }

    @Test("keyChange moves the account to a new key; the old key no longer finds it")
    func keyChange() async throws {
        let client = try await fixture.client("fast")
        let created = try await client.register()
        let accountURL = try #require(created.location)
        let newSigner = try JWSSigner(.ed25519(Curve25519.Signing.PrivateKey()))
        let inner = try newSigner.sign(
            payload: try JSONSerialization.data(withJSONObject: [
                "account": accountURL, "oldKey": client.signer.publicJWK.json,
            ]),
            url: client.url("keyChange"), nonce: nil, keyID: nil
        )
        let changed = try await client.post(
            client.url("keyChange"), try JSONSerialization.jsonObject(with: inner) as? [String: Any])
        #expect(changed.status == 200, "\(changed.text)")
        let old = try await client.post(client.url("newAccount"), ["onlyReturnExisting": true], useJWK: true)
        #expect(old.problemType == "accountDoesNotExist")
        let found = try await client.post(
            client.url("newAccount"), ["onlyReturnExisting": true], useJWK: true, signer: newSigner)
        #expect(found.status == 200 && found.location == accountURL)
        let order = try await client.post(
            client.url("newOrder"), ["identifiers": [["type": "dns", "value": "ed.acme.test"]]], signer: newSigner)
        #expect(order.status == 201, "EdDSA requests verify")
    }

    @Test(
        "ARI: renewalInfo two thirds into the lifetime, Retry-After, pulled forward by the CLI; replaces once, then alreadyReplaced"
    )
    func renewalInformation() async throws {
        let client = try await fixture.client("fast")
        let final = try await issue(
            client, ["ari.acme.test"], extra: ["notAfter": Date().addingTimeInterval(30 * 86_400).formatted(.iso8601)])
        let download = try await client.post(final["certificate"] as? String ?? "", nil)
        let leafPEM =
            download.text.components(separatedBy: "-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        let leaf = try Certificate(pemEncoded: leafPEM)
        let akid = try #require(try leaf.extensions.authorityKeyIdentifier?.keyIdentifier)
        let certificateID = RenewalInfo.certificateID(authorityKeyID: Array(akid), serialBytes: leaf.serialNumber.bytes)
        let info = try await client.raw("GET", client.url("renewalInfo") + "/" + certificateID)
        #expect(info.status == 200, "\(info.text)")
        #expect(info.header("Retry-After") == "21600")
        let window = try #require(info.json["suggestedWindow"] as? [String: String])
        let start = try #require(window["start"].flatMap { try? Date($0, strategy: .iso8601) })
        let end = try #require(window["end"].flatMap { try? Date($0, strategy: .iso8601) })
        let lifetime = leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore)
        #expect(start < end)
        #expect(abs(end.timeIntervalSince(leaf.notValidBefore) - lifetime * 2 / 3) < 120)
        #expect(start > leaf.notValidBefore.addingTimeInterval(lifetime / 2))

        let serial = SerialNumbers.hex(leaf.serialNumber)
        #expect(try fixture.signet(["acme", "ari", "advance", "--serial", serial]).succeeded)
        let advanced = try await client.raw("GET", client.url("renewalInfo") + "/" + certificateID)
        let newEnd = try #require(
            (advanced.json["suggestedWindow"] as? [String: String])?["end"].flatMap {
                try? Date($0, strategy: .iso8601)
            })
        #expect(newEnd <= Date().addingTimeInterval(1), "an advanced window has begun")

        let replacement = try await client.order(["ari.acme.test"], extra: ["replaces": certificateID])
        #expect(
            replacement.status == 201 && replacement.json["replaces"] as? String == certificateID, "\(replacement.text)"
        )
        let twice = try await client.order(["ari.acme.test"], extra: ["replaces": certificateID])
        #expect(twice.status == 409 && twice.problemType == "alreadyReplaced")
        let unknown = try await client.raw(
            "GET", client.url("renewalInfo") + "/" + Base64URL.encode(Array(akid)) + ".AQID")
        #expect(unknown.status == 404)
        let garbage = try await client.raw("GET", client.url("renewalInfo") + "/not-an-id")
        #expect(garbage.status == 400 && garbage.problemType == "malformed")
    }

    @Test(
        "revokeCert by the certificate's own key and by its account; twice is alreadyRevoked; bad reasons are refused")
    func revocation() async throws {
        let fixture = try fixture
        let client = try await fixture.client("fast")
        try await client.register()
        for (index, byKey) in [true, false].enumerated() {
            let name = "revoke\(index).acme.test"
            let leafKey = P256.Signing.PrivateKey()
            let order = try await client.order([name])
            try await client.authorize(order)
            let final = try await client.post(
                order.json["finalize"] as? String ?? "", ["csr": try ACMETestClient.csr([name], key: .init(leafKey))])
            let download = try await client.post(final.json["certificate"] as? String ?? "", nil)
            let leaf = try Certificate(
                pemEncoded: download.text.components(separatedBy: "-----END CERTIFICATE-----")[0]
                    + "-----END CERTIFICATE-----\n")
            var der = DER.Serializer()
            try der.serialize(leaf)
            let certificate = Base64URL.encode(der.serializedBytes)
            let signer = byKey ? try JWSSigner(.p256(leafKey)) : nil
            let badReason = try await client.post(
                client.url("revokeCert"), ["certificate": certificate, "reason": 7], useJWK: byKey, signer: signer)
            #expect(badReason.problemType == "badRevocationReason")
            let stranger = try await fixture.client("fast")
            try await stranger.register()
            let foreign = try await stranger.post(
                stranger.url("revokeCert"), ["certificate": certificate, "reason": 1])
            #expect(foreign.status == 403 && foreign.problemType == "unauthorized")
            let revoked = try await client.post(
                client.url("revokeCert"), ["certificate": certificate, "reason": 1], useJWK: byKey, signer: signer)
            #expect(revoked.status == 200, "\(revoked.text)")
            let again = try await client.post(
                client.url("revokeCert"), ["certificate": certificate, "reason": 1], useJWK: byKey, signer: signer)
            #expect(again.problemType == "alreadyRevoked")
            let serial = SerialNumbers.hex(leaf.serialNumber)
            let row = try fixture.ledger { db in
                try Row.fetchOne(
                    db, sql: "SELECT status, revocation_reason FROM certificates WHERE serial = ?", arguments: [serial]
                ).map { [$0["status"] as String? ?? "", $0["revocation_reason"] as String? ?? ""] }
            }
            #expect(row == ["revoked", "keyCompromise"])
            let events = try fixture.ledger {
                try Int.fetchOne(
                    $0, sql: "SELECT count(*) FROM audit_events WHERE action = 'certificate.revoke' AND subject = ?",
                    arguments: [serial])
            }
            #expect(events == 1)
        }
    }
}
