import Foundation
import SignetAuthority
import SignetKeys
import SignetLedger
import Testing

/// Everything that stores Signet's records must do, whatever the database: each test runs against every store
/// implementation in `StoreBackend.all`, so a new backend proves itself by passing this suite unchanged.
@Suite("store conformance: the contract of the storage protocols")
struct StoreConformanceTests {
    typealias Stores = IssuedCertificateStore & TokenStore & AuditLog & RevocationListStore & ManagedCertificateStore
        & StoreHealth

    /// A store implementation under test, fresh and empty for each test.
    struct StoreBackend: Sendable, CustomStringConvertible {
        let description: String
        let make: @Sendable () throws -> any Stores

        static let all: [StoreBackend] = [
            StoreBackend(description: "SQLite") {
                let key = try LedgerKey(
                    base64: Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString())
                return try CertificateLedger(path: try Fixtures.temporaryDirectory() + "/ledger.sqlite", key: key)
            }
        ]
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

    func event(_ subject: String, action: String = "certificate.issue") -> AuditEvent {
        AuditEvent(at: Date(), actor: "token:ci", action: action, outcome: .success, subject: subject)
    }

    @Test(
        "certificates: filtered by host (wildcards included), status, expiry, requester and issue time, newest first; found by serial and by requester and key",
        arguments: StoreBackend.all)
    func certificates(_ backend: StoreBackend) async throws {
        let store = try backend.make()
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
    }

    @Test(
        "revocation: once, with its time, reason and event; twice answers the first; expired and unknown serials change nothing; the CRL's list has it",
        arguments: StoreBackend.all)
    func revocation(_ backend: StoreBackend) async throws {
        let store = try backend.make()
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
        let store = try backend.make()
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
        let store = try backend.make()
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
        "managed certificates: one per name, read back, due when scheduled, a renewal's pending key kept until it completes or fails",
        arguments: StoreBackend.all)
    func managedCertificates(_ backend: StoreBackend) async throws {
        let store = try backend.make()
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
        #expect(try await store.managedCertificates().map(\.name) == ["web"])
        #expect(try await store.managedCertificates(cluster: "c", namespace: "n").map(\.name) == ["web"])
        #expect(try await store.managedTargetNamespaces().map { "\($0.cluster)/\($0.namespace)" } == ["c/n"])
        #expect(
            try await store.dueManagedCertificates(at: now.addingTimeInterval(1), limit: 10).map(\.name) == ["web"],
            "a new one is due at once")

        let (_, pem) = try KeyAlgorithm.ecdsaP256.generate()
        try await store.beginRenewal(name: "web", key: .init(pem: pem, publicKeySHA256: "pk", generation: 1), at: now)
        #expect(try await store.managedCertificate(name: "web")?.pendingKey?.pem == pem)
        try await store.failRenewal(
            name: "web", error: "the cluster is down", at: now, retryAt: now.addingTimeInterval(600))
        #expect(try await store.dueManagedCertificates(at: now.addingTimeInterval(1), limit: 10).isEmpty, "backing off")
        #expect(
            try await store.managedCertificate(name: "web")?.pendingKey?.pem == pem,
            "a failed renewal keeps its key for the next attempt")
        try await store.completeRenewal(
            name: "web",
            delivered: .init(
                serial: "0a", notBefore: now, notAfter: now.addingTimeInterval(86_400),
                renewalTime: now.addingTimeInterval(57_600), generation: 1, deliveredAt: now,
                secretResourceVersion: "7"), event: event("web", action: "managed.renew"))
        let delivered = try await store.managedCertificate(name: "web")
        #expect(delivered?.pendingKey == nil && delivered?.delivered?.serial == "0a")
        try await store.scheduleManagedCertificate(
            name: "web", at: now, event: event("web", action: "managed.renew-requested"))
        #expect(try await store.dueManagedCertificates(at: now.addingTimeInterval(1), limit: 10).map(\.name) == ["web"])
        try await store.deleteManagedCertificate(name: "web", event: event("web", action: "managed.delete"))
        #expect(try await store.managedCertificate(name: "web") == nil)
    }
}
