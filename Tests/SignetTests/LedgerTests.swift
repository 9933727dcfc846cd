import Foundation
import GRDB
import SignetACME
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetManaged
import Testing

/// What only the SQLite ledger does (group commit, WAL and durability, migrations, keys at rest, the ACME store); what
/// every store must do is in StoreConformanceTests.
@Suite("the ledger")
struct LedgerTests {
    func entry(serial: String, names: [String], notAfter: Date, requester: String = "token:ci", issuedAt: Date = Date())
        -> CertificateEntry
    {
        CertificateEntry(
            serial: serial, issuerKeyID: "ab", subject: "CN=\(names[0])", dnsNames: names, ipAddresses: [],
            publicKeySHA256: "pk", csrSHA256: "csr", profile: .server, notBefore: notAfter.addingTimeInterval(-3600),
            notAfter: notAfter, requester: requester, issuedAt: issuedAt, der: [0x30, 0x00]
        )
    }

    func event(_ subject: String) -> AuditEvent {
        AuditEvent(at: Date(), actor: "token:ci", action: "certificate.issue", outcome: .success, subject: subject)
    }

    @Test("a clock stepping backwards does not break issue-time filters: recorded times never decrease")
    func clockStepsBack() async throws {
        let ledger = try CertificateLedger(path: try Fixtures.temporaryDirectory() + "/ledger.sqlite")
        let now = Date()
        try await ledger.record(
            entry(serial: "01", names: ["a.example.com"], notAfter: now.addingTimeInterval(3600), issuedAt: now),
            event: event("01"))
        try await ledger.record(
            entry(
                serial: "02", names: ["a.example.com"], notAfter: now.addingTimeInterval(3600),
                issuedAt: now.addingTimeInterval(-60)), event: event("02"))
        try await ledger.record(
            entry(
                serial: "03", names: ["a.example.com"], notAfter: now.addingTimeInterval(3600),
                issuedAt: now.addingTimeInterval(10)), event: event("03"))
        let second = try #require(try await ledger.certificate(serial: "02"))
        #expect(second.issuedAt >= now.addingTimeInterval(-0.001), "recorded at the previous time, not before it")
        var after = CertificateQuery()
        after.issuedAfter = now.addingTimeInterval(5)
        #expect(try await ledger.certificates(matching: after).entries.map(\.serial) == ["03"])
        var before = CertificateQuery()
        before.issuedBefore = now.addingTimeInterval(5)
        #expect(try await ledger.certificates(matching: before).entries.map(\.serial) == ["02", "01"])
        before.issuedBefore = now.addingTimeInterval(-3600)
        #expect(try await ledger.certificates(matching: before).entries.isEmpty)
    }

    @Test("pages with a cursor until the end, and refuses a forged cursor")
    func pagination() async throws {
        let ledger = try CertificateLedger(path: try Fixtures.temporaryDirectory() + "/ledger.sqlite")
        for index in 0..<25 {
            try await ledger.record(
                entry(
                    serial: String(format: "%02x", index), names: ["a.example.com"],
                    notAfter: Date().addingTimeInterval(3600)), event: event("x"))
        }
        var query = CertificateQuery()
        query.limit = 10
        var seen: [String] = []
        var pages = 0
        repeat {
            let page = try await ledger.certificates(matching: query)
            seen += page.entries.map(\.serial)
            query.cursor = page.nextCursor
            pages += 1
        } while query.cursor != nil && pages < 10
        #expect(pages == 3)
        #expect(seen == (0..<25).reversed().map { String(format: "%02x", $0) })
        query.cursor = "not-a-cursor"
        await #expect(throws: LedgerError.invalidCursor("not-a-cursor")) {
            try await ledger.certificates(matching: query)
        }
    }

    @Test("ACME nonces: each is good once, not after it expires, not if forged, and still good after a restart")
    func nonces() async throws {
        let path = try Fixtures.temporaryDirectory() + "/ledger.sqlite"
        let ledger = try CertificateLedger(path: path)
        let now = Date()
        let first = try await ledger.issueNonce(now: now)
        let second = try await ledger.issueNonce(now: now)
        let old = try await ledger.issueNonce(now: now.addingTimeInterval(-3601))
        #expect(first != second && first.count == 43 && Base64URL.decode(first)?.count == 32)
        #expect(try await ledger.consumeNonce(first, now: now))
        #expect(try await !ledger.consumeNonce(first, now: now), "single use")
        #expect(try await !ledger.consumeNonce("never-handed-out", now: now))
        #expect(try await !ledger.consumeNonce(old, now: now), "expired after an hour")
        var forged = Array(Base64URL.decode(second) ?? Data())
        forged[0] ^= 1
        #expect(try await !ledger.consumeNonce(Base64URL.encode(forged), now: now), "a changed expiry breaks the MAC")
        try ledger.close()
        let restarted = try CertificateLedger(path: path)
        #expect(try await restarted.consumeNonce(second, now: now), "nonces survive a restart")
        #expect(try await !restarted.consumeNonce(first, now: now), "and a used one stays used")
        #expect(
            try await restarted.pruneACME(now: now.addingTimeInterval(7200), retention: .seconds(86_400)) == 2,
            "spent nonces are forgotten once expired")
        try restarted.close()
    }

    @Test(
        "ACME objects: orders and authorizations a day past their expiry are pruned unless an order still needs them; valid orders stay"
    )
    func acmePruning() async throws {
        let ledger = try CertificateLedger(path: try Fixtures.temporaryDirectory() + "/ledger.sqlite")
        let now = Date(), old = now.addingTimeInterval(-3 * 86_400)
        let account = ACMEAccount(
            id: "acct", directory: "d", thumbprint: "t", jwk: "{}", status: .valid, contact: [], externalKeyID: nil,
            createdAt: old)
        #expect(try await ledger.createAccount(account).created)
        #expect(try await !ledger.createAccount(account).created, "the same key finds the same account")
        func authorization(_ id: String, expires: Date) -> ACMEAuthorization {
            ACMEAuthorization(
                id: id, accountID: "acct", identifier: ACMEIdentifier(type: .dns, value: "\(id).example.com"),
                wildcard: false,
                status: .pending, expires: expires, trusted: false,
                challenges: [ACMEChallenge(type: .http01, token: "t")])
        }
        func order(_ id: String, _ authorizations: [String], expires: Date) -> ACMEOrder {
            ACMEOrder(
                id: id, accountID: "acct", status: .pending, identifiers: [], authorizationIDs: authorizations,
                notBefore: nil, notAfter: nil,
                profile: nil, replaces: nil, expires: expires, createdAt: old)
        }
        try await ledger.createOrder(
            order("stale", ["a1"], expires: old), authorizations: [authorization("a1", expires: old)], events: [])
        try await ledger.createOrder(
            order("fresh", ["a2"], expires: now.addingTimeInterval(3600)),
            authorizations: [authorization("a2", expires: old)], events: [])
        try await ledger.createOrder(
            order("done", ["a3"], expires: old), authorizations: [authorization("a3", expires: old)], events: [])
        #expect(try await ledger.beginFinalization(orderID: "done"))
        let entry = CertificateEntry(
            serial: "01", issuerKeyID: "k", subject: "CN=done.example.com", dnsNames: ["done.example.com"],
            ipAddresses: [], publicKeySHA256: "p",
            csrSHA256: "c", profile: .server, notBefore: now, notAfter: now.addingTimeInterval(3600),
            requester: "acme:d/acct", issuedAt: now, der: [1]
        )
        try await ledger.record(
            entry,
            event: AuditEvent(
                at: now, actor: "acme:d/acct", action: "certificate.issue", outcome: .success, subject: "01"),
            alongside: .completeOrder(orderID: "done", serial: "01"))
        #expect(
            try await ledger.pruneACME(now: now, retention: .seconds(86_400)) == 2,
            "the stale order and its authorization")
        #expect(try await ledger.order(id: "stale") == nil)
        #expect(try await ledger.authorization(id: "a1") == nil)
        #expect(try await ledger.order(id: "fresh") != nil)
        #expect(try await ledger.authorization(id: "a2") != nil, "an order still in use keeps its authorization")
        #expect(try await ledger.order(id: "done")?.status == .valid)
        #expect(try await ledger.authorization(id: "a3") != nil)
    }

    @Test(
        "the schema is migrated, WAL, with the durability asked for, read through the ledger's own connections",
        arguments: CertificateLedger.Durability.allCases)
    func pragmas(_ durability: CertificateLedger.Durability) async throws {
        let path = try Fixtures.temporaryDirectory() + "/ledger.sqlite"
        let ledger = try CertificateLedger(path: path, durability: durability)
        #expect(try await ledger.pragma("synchronous") == (durability == .full ? "2" : "1"))
        #expect(try await ledger.pragma("secure_delete") == "1")
        #expect(try await ledger.pragma("journal_mode") == "wal")
        try ledger.close()
        let queue = try DatabaseQueue(path: path)
        let tables = try await queue.read {
            try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        }
        #expect(tables.contains("certificates") && tables.contains("tokens") && tables.contains("audit_events"))
    }

    @Test(
        "pending keys are sealed with a key kept outside the database: the files hold no key bytes, another key or none cannot open them, and the files are 0600"
    )
    func pendingKeysAtRest() async throws {
        let directory = try Fixtures.temporaryDirectory()
        let path = directory + "/ledger.sqlite"
        let keyFile = directory + "/ledger.key"
        let previous = umask(0o022)
        defer { umask(previous) }
        let ledger = try CertificateLedger(path: path, key: try LedgerKey.loadOrCreate(path: keyFile))
        let spec = ManagedCertificateSpec(
            dnsNames: ["web.example.com"], durationSeconds: 86_400,
            target: DeliveryTarget(cluster: "c", namespace: "n", secretName: "web-tls"))
        try await ledger.createManagedCertificate(
            ManagedCertificateRecord(name: "web", owner: "token:ci", spec: spec, createdAt: Date()), event: event("web")
        )
        let (_, pem) = try KeyAlgorithm.ecdsaP256.generate()
        try await ledger.beginRenewal(
            name: "web", key: .init(pem: pem, publicKeySHA256: "pk", generation: 1), at: Date())
        #expect(try await ledger.managedCertificate(name: "web")?.pendingKey?.pem == pem)

        let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let der = try #require(Data(base64Encoded: body))
        for file in [path, path + "-wal", path + "-shm"] {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
            #expect(
                bytes.range(of: Data(body.prefix(40).utf8)) == nil && bytes.range(of: der.suffix(40)) == nil,
                "\(file) holds the key")
            let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file): \(String(mode ?? 0, radix: 8))")
        }
        #expect(try FileManager.default.attributesOfItem(atPath: keyFile)[.posixPermissions] as? Int == 0o600)
        try ledger.close()

        let other = try CertificateLedger(
            path: path, key: try LedgerKey(base64: Data(repeating: 7, count: 32).base64EncodedString()))
        await #expect(throws: LedgerKeyError.wrongKey) { _ = try await other.managedCertificate(name: "web") }
        try other.close()
        let keyless = try CertificateLedger(path: path)
        await #expect(throws: LedgerKeyError.noKey) { _ = try await keyless.managedCertificate(name: "web") }
        try keyless.close()
        let reopened = try CertificateLedger(path: path, key: try LedgerKey.loadOrCreate(path: keyFile))
        #expect(try await reopened.managedCertificate(name: "web")?.pendingKey?.pem == pem)
        try reopened.close()
    }
}
