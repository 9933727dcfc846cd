import Foundation
import Logging
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetManaged
import SignetPostgres
import Testing

/// Everything that stores Signet's records must do, whatever the database: each test runs against every store
/// implementation in `StoreBackend.all`, so a new backend proves itself by passing this suite unchanged.
@Suite("store conformance: the contract of the storage protocols")
struct StoreConformanceTests {
    typealias Stores = any Ledger

    /// A store implementation under test, fresh and empty for each test.
    struct StoreBackend: Sendable, CustomStringConvertible {
        let description: String
        /// A new, empty database; opening its location again is a second replica on the same database.
        let fresh: @Sendable () async throws -> String
        let open: @Sendable (_ location: String, LedgerKey) async throws -> Stores

        static let all: [StoreBackend] = [
            StoreBackend(
                description: "SQLite", fresh: { try Fixtures.temporaryDirectory() + "/ledger.sqlite" },
                open: { path, key in try CertificateLedger(path: path, key: key) }),
            // A database of its own on the suite's PostgreSQL server (started on first use).
            StoreBackend(
                description: "PostgreSQL",
                fresh: {
                    let server = try PostgresServer.shared.get()
                    return server.url(try server.makeDatabase())
                },
                open: { url, key in
                    try await PostgresLedger(
                        PostgresConnectionSettings(url: url), key: key, deadline: PostgresServer.inProcessDeadline,
                        logger: Logger(label: "test.postgres"))
                }),
        ]

        static func key() throws -> LedgerKey {
            try LedgerKey(base64: Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString())
        }

        func make() async throws -> Stores {
            try await open(try await fresh(), try Self.key())
        }

        /// Two stores on one database, as two replicas see it.
        func makePair() async throws -> (Stores, Stores) {
            let location = try await fresh()
            let key = try Self.key()
            return (try await open(location, key), try await open(location, key))
        }
    }

    func entry(
        serial: String, names: [String], notAfter: Date, requester: String = "token:ci", issuedAt: Date = Date(),
        key: String = "pk"
    ) -> CertificateEntry {
        CertificateEntry(
            serial: serial, issuerKeyID: "ab", subject: "CN=\(names[0])", dnsNames: names, ipAddresses: [],
            publicKeySHA256: key, csrSHA256: "csr", profile: .server, notBefore: notAfter.addingTimeInterval(-3600),
            notAfter: notAfter, requester: requester, issuedAt: issuedAt, der: [0x30, 0x00]
        )
    }

    func delivered(serial: String, now: Date, resourceVersion: String) -> ManagedCertificateRecord.Delivered {
        .init(
            serial: serial, notBefore: now, notAfter: now.addingTimeInterval(86_400),
            renewalTime: now.addingTimeInterval(57_600), generation: 1, deliveredAt: now,
            secretResourceVersion: resourceVersion)
    }

    /// What is due at `at`, claimed only for that instant, so that asking again sees the same.
    func due(_ store: Stores, at: Date) async throws -> [ManagedCertificateRecord] {
        try await store.claimDueManagedCertificates(at: at, until: at, limit: 10)
    }

    func event(_ subject: String, action: String = "certificate.issue") -> AuditEvent {
        AuditEvent(at: Date(), actor: "token:ci", action: action, outcome: .success, subject: subject)
    }

    @Test(
        "group commit: 400 concurrent records share a few transactions, every one committed with its audit event; a refused write (a serial taken) in a batch fails only its own caller",
        arguments: StoreBackend.all)
    func groupCommit(_ backend: StoreBackend) async throws {
        let location = try await backend.fresh()
        let key = try StoreBackend.key()
        let store = try await backend.open(location, key)
        let notAfter = Date().addingTimeInterval(3600)
        /// Records `count` certificates at once (serials from `first` on, or `duplicate` for one of them); the
        /// serials refused as taken.
        func recordTogether(_ count: Int, from first: Int, duplicate: (index: Int, serial: String)? = nil)
            async throws -> [String]
        {
            try await withThrowingTaskGroup(of: String?.self, returning: [String].self) { group in
                for index in first..<(first + count) {
                    group.addTask {
                        let serial = index == duplicate?.index ? duplicate!.serial : String(format: "%04x", index)
                        do {
                            try await store.record(
                                self.entry(serial: serial, names: ["a.example.com"], notAfter: notAfter),
                                event: self.event(serial))
                            return nil
                        } catch LedgerError.serialTaken(let taken) {
                            return taken
                        }
                    }
                }
                return try await group.reduce(into: []) { if let serial = $1 { $0.append(serial) } }
            }
        }
        #expect(try await recordTogether(400, from: 0).isEmpty)
        let transactions = await store.groupCommitTransactions
        #expect(transactions >= 2 && transactions <= 250, "\(transactions) transactions for 400 concurrent records")
        // One of 50 more reuses a serial: the unique key refuses it, and only it (its batch is retried piece by piece).
        #expect(try await recordTogether(50, from: 400, duplicate: (425, "0007")) == ["0007"])
        try await store.close()
        // Another connection, as after a restart or on another replica, sees every row and its audit event: the
        // refused write's event went with it.
        let reopened = try await backend.open(location, key)
        #expect(try await reopened.summary(now: Date()).counts[.valid] == 449)
        let events = try await reopened.auditEvents(limit: 1000)
        #expect(events.count == 449)
        #expect(events.filter { $0.subject == "0007" }.count == 1, "the first record's event, not the refused one's")
        try await reopened.close()
    }

    @Test(
        "certificates: filtered by host (wildcards included), status, expiry, requester and issue time, newest first; found by serial and by requester and key; a serial recorded once",
        arguments: StoreBackend.all)
    func certificates(_ backend: StoreBackend) async throws {
        let store = try await backend.make()
        let now = Date()
        try await store.record(
            entry(
                serial: "01", names: ["a.example.com"], notAfter: now.addingTimeInterval(86_400),
                issuedAt: now.addingTimeInterval(-30)), event: event("01"))
        try await store.record(
            entry(
                serial: "02", names: ["*.example.com"], notAfter: now.addingTimeInterval(10 * 86_400),
                requester: "token:other",
                issuedAt: now.addingTimeInterval(-20), key: "other"), event: event("02"))
        try await store.record(
            entry(
                serial: "03", names: ["bookinfo.com"], notAfter: now.addingTimeInterval(-60),
                issuedAt: now.addingTimeInterval(-10)), event: event("03"))

        func serials(_ configure: (inout CertificateQuery) -> Void) async throws -> [String] {
            var query = CertificateQuery()
            configure(&query)
            return try await store.certificates(matching: query, now: now).entries.map(\.serial)
        }
        #expect(try await serials { _ in } == ["03", "02", "01"])
        #expect(try await serials { $0.dnsName = "a.example.com" } == ["02", "01"])
        #expect(try await serials { $0.dnsName = "b.example.com" } == ["02"])
        #expect(try await serials { $0.dnsName = "x.a.example.com" } == [])
        #expect(try await serials { $0.status = .expired } == ["03"])
        #expect(try await serials { $0.status = .valid } == ["02", "01"])
        #expect(try await serials { $0.status = .revoked } == [])
        #expect(try await serials { $0.expiringBefore = now.addingTimeInterval(2 * 86_400) } == ["03", "01"])
        #expect(try await serials { $0.requester = "token:other" } == ["02"])
        #expect(try await serials { $0.issuedAfter = now.addingTimeInterval(-25) } == ["03", "02"])
        #expect(try await serials { $0.issuedBefore = now.addingTimeInterval(-15) } == ["02", "01"])
        #expect(try await serials { $0.publicKeySHA256 = "other" } == ["02"])
        #expect(try await store.certificate(serial: "02")?.dnsNames == ["*.example.com"])
        #expect(try await store.certificate(serial: "ff") == nil)
        try await store.checkHealth()
        let summary = try await store.summary(now: now)
        #expect(summary.counts[.valid] == 2 && summary.counts[.expired] == 1)
        #expect(
            summary.earliestExpiry.map { abs($0.timeIntervalSince(now.addingTimeInterval(86_400))) < 2 } == true,
            "the first valid one to expire")
        #expect(try await store.certificate(requester: "token:other", publicKeySHA256: "other")?.serial == "02")
        #expect(try await store.certificate(requester: "token:ci", publicKeySHA256: "other") == nil)
        #expect(
            Set(try await store.auditEvents(limit: 10).compactMap(\.subject)) == ["01", "02", "03"],
            "each record with its event")
        await #expect(throws: LedgerError.serialTaken("01"), "a serial is recorded once") {
            try await store.record(
                entry(serial: "01", names: ["z.example.com"], notAfter: now.addingTimeInterval(86_400)),
                event: event("01-again"))
        }
        #expect(try await store.auditEvents(limit: 10).count == 3, "nothing of the refused record was written")
        #expect(try await store.certificate(serial: "01")?.dnsNames == ["a.example.com"])
    }

    @Test(
        "revocation: once, with its time, reason and event; twice answers the first; expired and unknown serials change nothing; the CRL's list has it",
        arguments: StoreBackend.all)
    func revocation(_ backend: StoreBackend) async throws {
        let store = try await backend.make()
        let now = Date()
        try await store.record(
            entry(serial: "0a", names: ["a.example.com"], notAfter: now.addingTimeInterval(86_400)), event: event("0a"))
        try await store.record(
            entry(serial: "0b", names: ["b.example.com"], notAfter: now.addingTimeInterval(-60)), event: event("0b"))
        let at = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        guard
            case .revoked(let revoked) = try await store.revoke(
                serial: "0a", reason: .keyCompromise, at: at, actor: "token:admin")
        else {
            Issue.record("the first revocation revokes")
            return
        }
        #expect(
            revoked.storedStatus == .revoked && revoked.revocationReason == "keyCompromise" && revoked.revokedAt == at)
        guard
            case .alreadyRevoked(let again) = try await store.revoke(
                serial: "0a", reason: .superseded, at: at.addingTimeInterval(60), actor: "token:admin")
        else {
            Issue.record("a second revocation answers the first")
            return
        }
        #expect(again.revocationReason == "keyCompromise" && again.revokedAt == at)
        guard case .expired = try await store.revoke(serial: "0b", reason: .keyCompromise, at: at, actor: "token:admin")
        else {
            Issue.record("an expired certificate is not revoked")
            return
        }
        #expect(try await store.revoke(serial: "0c", reason: .keyCompromise, at: at, actor: "token:admin") == .unknown)
        #expect(try await store.certificate(serial: "0b")?.storedStatus == .valid)
        var query = CertificateQuery()
        query.status = .revoked
        #expect(try await store.certificates(matching: query).entries.map(\.serial) == ["0a"])
        #expect(try await store.auditEvents(limit: 100).filter { $0.action == "certificate.revoke" }.count == 1)
        let listed = try await store.revokedCertificates(issuerKeyID: "ab", expiredAfter: now)
        #expect(listed.map(\.serial) == ["0a"] && listed.first?.reason == .keyCompromise)
    }

    @Test(
        "CRLs: the latest per issuing key, a number at or below the stored one never replaces it",
        arguments: StoreBackend.all)
    func crls(_ backend: StoreBackend) async throws {
        let store = try await backend.make()
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        func crl(_ number: Int64) -> StoredCRL {
            StoredCRL(
                issuerKeyID: "ab", number: number, thisUpdate: now, nextUpdate: now.addingTimeInterval(3600),
                entries: 0, der: [0x30, UInt8(number)])
        }
        #expect(try await store.latestCRL(issuerKeyID: "ab") == nil)
        #expect(try await store.storeCRL(crl(5)))
        #expect(try await !store.storeCRL(crl(5)), "a number is never reused")
        #expect(try await !store.storeCRL(crl(4)))
        #expect(try await store.storeCRL(crl(6)))
        #expect(try await store.latestCRL(issuerKeyID: "ab")?.number == 6)
        #expect(try await store.latestCRL(issuerKeyID: "cd") == nil)
    }

    @Test(
        "tokens: stored by digest, names never reused, revocation recorded in the audit log",
        arguments: StoreBackend.all)
    func tokens(_ backend: StoreBackend) async throws {
        let store = try await backend.make()
        let token = TokenEntry(
            name: "ci", secretSHA256: "digest", allowedNames: ["*.example.com"], allowedProfiles: [.server],
            maximumLifetime: .seconds(3600), createdAt: Date())
        try await store.createToken(token)
        await #expect(throws: LedgerError.tokenExists("ci")) { try await store.createToken(token) }
        #expect(try await store.token(secretSHA256: "digest")?.name == "ci")
        #expect(try await store.token(name: "ci")?.allowedNames == ["*.example.com"])
        #expect(try await store.tokens().map(\.name) == ["ci"])
        try await store.revokeToken(name: "ci", at: Date())
        #expect(try await store.token(secretSHA256: "digest")?.revokedAt != nil)
        await #expect(throws: LedgerError.noSuchToken("ci")) { try await store.revokeToken(name: "ci", at: Date()) }
        #expect(try await store.auditEvents(limit: 100).map(\.action) == ["token.revoke", "token.create"])
    }

    @Test(
        "managed certificates: one per name and one per Secret, read back, due when scheduled or when their certificate is revoked, a renewal's pending key kept until it completes or fails",
        arguments: StoreBackend.all)
    func managedCertificates(_ backend: StoreBackend) async throws {
        let store = try await backend.make()
        let spec = ManagedCertificateSpec(
            dnsNames: ["web.example.com"], durationSeconds: 86_400,
            target: DeliveryTarget(cluster: "c", namespace: "n", secretName: "web-tls"))
        let now = Date()
        try await store.createManagedCertificate(
            ManagedCertificateRecord(name: "web", owner: "token:ci", spec: spec, createdAt: now),
            event: event("web", action: "managed.create"))
        await #expect(throws: (any Error).self) {
            try await store.createManagedCertificate(
                ManagedCertificateRecord(name: "web", owner: "token:ci", spec: spec, createdAt: now),
                event: event("web"))
        }
        #expect(try await store.managedCertificate(name: "web")?.spec == spec)
        await #expect(throws: LedgerError.secretTaken(target: "\(spec.target)", by: "web"), "one Secret, one owner") {
            try await store.createManagedCertificate(
                ManagedCertificateRecord(name: "other", owner: "token:ci", spec: spec, createdAt: now),
                event: event("other"))
        }
        #expect(try await store.managedCertificates().map(\.name) == ["web"])
        #expect(try await store.managedCertificates(cluster: "c", namespace: "n").map(\.name) == ["web"])
        #expect(try await store.managedTargetNamespaces().map { "\($0.cluster)/\($0.namespace)" } == ["c/n"])
        #expect(
            try await due(store, at: now.addingTimeInterval(1)).map(\.name) == ["web"],
            "a new one is due at once")

        let (_, pem) = try KeyAlgorithm.ecdsaP256.generate()
        try await store.beginRenewal(name: "web", key: .init(pem: pem, publicKeySHA256: "pk", generation: 1), at: now)
        #expect(try await store.managedCertificate(name: "web")?.pendingKey?.pem == pem)
        try await store.failRenewal(
            name: "web", error: "the cluster is down", at: now, retryAt: now.addingTimeInterval(600))
        #expect(try await due(store, at: now.addingTimeInterval(1)).isEmpty, "backing off")
        #expect(
            try await store.managedCertificate(name: "web")?.pendingKey?.pem == pem,
            "a failed renewal keeps its key for the next attempt")
        try await store.completeRenewal(
            name: "web", delivered: delivered(serial: "0a", now: now, resourceVersion: "7"),
            event: event("web", action: "managed.renew"))
        let renewed = try await store.managedCertificate(name: "web")
        #expect(renewed?.pendingKey == nil && renewed?.delivered?.serial == "0a")
        #expect(try await due(store, at: now.addingTimeInterval(1)).isEmpty, "renewed")
        try await store.record(
            entry(serial: "0a", names: ["web.example.com"], notAfter: now.addingTimeInterval(86_400)),
            event: event("0a"))
        _ = try await store.revoke(serial: "0a", reason: .keyCompromise, at: now, actor: "token:admin")
        #expect(
            try await due(store, at: now.addingTimeInterval(1)).map(\.name) == ["web"],
            "revoking its current certificate makes it due at once")
        #expect(try await store.managedCertificate(name: "web")?.lastErrorReason == "Revoked")
        try await store.completeRenewal(
            name: "web", delivered: delivered(serial: "0b", now: now, resourceVersion: "8"),
            event: event("web", action: "managed.renew"))
        try await store.scheduleManagedCertificate(
            name: "web", at: now, event: event("web", action: "managed.renew-requested"))
        #expect(try await due(store, at: now.addingTimeInterval(1)).map(\.name) == ["web"])
        try await store.deleteManagedCertificate(name: "web", event: event("web", action: "managed.delete"))
        #expect(try await store.managedCertificate(name: "web") == nil)
    }

    @Test(
        "renewal claims: replicas claiming at once each get other due certificates, none twice; a claim kept by its heartbeat holds, a lapsed one is anyone's, a finished renewal frees it",
        arguments: StoreBackend.all)
    func renewalClaims(_ backend: StoreBackend) async throws {
        let (first, second) = try await backend.makePair()
        let now = Date()
        let names = (0..<12).map { "m\($0)" }
        for name in names {
            let spec = ManagedCertificateSpec(
                dnsNames: ["\(name).example.com"], durationSeconds: 86_400,
                target: DeliveryTarget(cluster: "c", namespace: "n", secretName: "\(name)-tls"))
            try await first.createManagedCertificate(
                ManagedCertificateRecord(name: name, owner: "token:ci", spec: spec, createdAt: now),
                event: event(name, action: "managed.create"))
        }
        let lease = now.addingTimeInterval(60)
        async let byFirst = first.claimDueManagedCertificates(at: now, until: lease, limit: 7)
        async let bySecond = second.claimDueManagedCertificates(at: now, until: lease, limit: 7)
        let (a, b) = (try await byFirst.map(\.name), try await bySecond.map(\.name))
        #expect(Set(a).isDisjoint(with: b), "\(a) and \(b)")
        #expect(a.count + b.count == 12 && Set(a + b) == Set(names), "\(a) and \(b)")
        #expect(try await first.claimDueManagedCertificates(at: now, until: lease, limit: 20).isEmpty, "all held")

        // m0 finishes; m1's replica keeps its claim alive; every other claim lapses.
        try await first.completeRenewal(
            name: "m0", delivered: delivered(serial: "0a", now: now, resourceVersion: "1"),
            event: event("m0", action: "managed.renew"))
        try await second.extendClaim(name: "m1", until: now.addingTimeInterval(120))
        let later = now.addingTimeInterval(61)
        let reclaimed = try await second.claimDueManagedCertificates(
            at: later, until: later.addingTimeInterval(60), limit: 20
        ).map(\.name)
        #expect(Set(reclaimed) == Set(names.dropFirst(2)), "\(reclaimed)")
        // A failed attempt frees its claim too; it is due again at its retry time.
        try await second.failRenewal(name: "m2", error: "down", at: later, retryAt: later)
        #expect(try await first.claimDueManagedCertificates(at: later, until: later, limit: 20).map(\.name) == ["m2"])
        try await first.close()
        try await second.close()
    }

    @Test(
        "leases: one holder at a time across replicas, kept by renewal, taken over once lapsed, free at once when released",
        arguments: StoreBackend.all)
    func leases(_ backend: StoreBackend) async throws {
        let (first, second) = try await backend.makePair()
        let now = Date()
        async let a = first.acquireLease("watch:c", holder: "a", until: now.addingTimeInterval(15), now: now)
        async let b = second.acquireLease("watch:c", holder: "b", until: now.addingTimeInterval(15), now: now)
        let (heldByA, heldByB) = try await (a, b)
        #expect(heldByA != heldByB, "exactly one of two racing replicas holds it")
        let (holder, other, holderStore, otherStore) =
            heldByA ? ("a", "b", first, second) : ("b", "a", second, first)
        let later = now.addingTimeInterval(10)
        #expect(
            try await holderStore.acquireLease(
                "watch:c", holder: holder, until: later.addingTimeInterval(15), now: later))
        #expect(
            try await !otherStore.acquireLease(
                "watch:c", holder: other, until: later.addingTimeInterval(15), now: later))
        #expect(
            try await otherStore.acquireLease("watch:d", holder: other, until: later, now: later), "leases are per name"
        )
        let lapsed = later.addingTimeInterval(16)
        #expect(
            try await otherStore.acquireLease(
                "watch:c", holder: other, until: lapsed.addingTimeInterval(15), now: lapsed))
        #expect(
            try await !holderStore.acquireLease(
                "watch:c", holder: holder, until: lapsed.addingTimeInterval(15), now: lapsed))
        try await holderStore.releaseLease("watch:c", holder: holder)
        #expect(
            try await !holderStore.acquireLease("watch:c", holder: holder, until: lapsed, now: lapsed),
            "not its to release")
        try await otherStore.releaseLease("watch:c", holder: other)
        #expect(
            try await holderStore.acquireLease("watch:c", holder: holder, until: lapsed, now: lapsed),
            "free once released")
        try await first.close()
        try await second.close()
    }
}
