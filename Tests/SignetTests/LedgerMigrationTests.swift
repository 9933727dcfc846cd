import Foundation
import Logging
import SignetACME
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetManaged
import SignetPostgres
import Testing

/// `signet ledger migrate`: a ledger holding every kind of record, copied SQLite → PostgreSQL → SQLite with the CLI.
@Suite("signet ledger migrate")
struct LedgerMigrationTests {
    /// Writes one of everything the ledger keeps, through the store protocols as Signet writes it.
    static func populate(_ ledger: any Ledger, pendingKey: String) async throws {
        let now = Date()
        try await ledger.createToken(
            TokenEntry(
                name: "ci", secretSHA256: "aa", allowedNames: ["*.example.com"], allowedProfiles: [.server],
                maximumLifetime: .seconds(86_400), createdAt: now, revokedAt: nil, allowedTargets: ["c/n/*"],
                auditor: false, administrator: false))
        try await ledger.createToken(
            TokenEntry(
                name: "auditor", secretSHA256: "bb", allowedNames: [], allowedProfiles: [],
                maximumLifetime: .seconds(3600), createdAt: now, revokedAt: nil, allowedTargets: [], auditor: true,
                administrator: false))
        try await ledger.revokeToken(name: "auditor", at: now)
        for index in 0..<25 {
            var entry = CertificateEntry(
                serial: String(format: "%02x", index) + "9abc", issuerKeyID: "ab",
                subject: "CN=host\(index).example.com",
                dnsNames: ["host\(index).example.com", "*.x\(index).example.com"],
                ipAddresses: index == 3 ? ["10.0.0.3"] : [], publicKeySHA256: "pk\(index)", csrSHA256: "csr",
                profile: .server, notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(86_400),
                requester: "token:ci", issuedAt: now.addingTimeInterval(Double(index)), der: [0x30, UInt8(index)])
            if index == 4 { entry.uris = ["spiffe://example.com/a"] }
            try await ledger.record(
                entry,
                event: AuditEvent(
                    at: now, actor: "token:ci", action: "certificate.issue", outcome: .success, subject: "\(index)",
                    names: ["host\(index).example.com"]))
        }
        _ = try await ledger.revoke(serial: "029abc", reason: .keyCompromise, at: now, actor: "token:ci")
        _ = try await ledger.storeCRL(
            StoredCRL(
                issuerKeyID: "ab", number: 7, thisUpdate: now, nextUpdate: now.addingTimeInterval(3600), entries: 1,
                der: [0x30, 0x03, 0x02, 0x01, 0x07]))
        let spec = ManagedCertificateSpec(
            dnsNames: ["web.example.com"], durationSeconds: 86_400,
            target: DeliveryTarget(cluster: "c", namespace: "n", secretName: "web-tls"))
        try await ledger.createManagedCertificate(
            ManagedCertificateRecord(name: "web", owner: "token:ci", spec: spec, createdAt: now),
            event: AuditEvent(at: now, actor: "token:ci", action: "managed.create", outcome: .success))
        try await ledger.beginRenewal(
            name: "web", key: .init(pem: pendingKey, publicKeySHA256: "pk", generation: 1), at: now)
        try await ledger.failRenewal(name: "web", error: "cluster down", at: now, retryAt: now.addingTimeInterval(60))
        try await ledger.createExternalKey(
            ACMEExternalKey(
                keyID: "kid", directory: "dir", label: "team", allowedNames: ["*.example.com"], createdAt: now),
            macKey: [9, 8, 7], actor: "cli")
        _ = try await ledger.createAccount(
            ACMEAccount(
                id: "acc", directory: "dir", thumbprint: "tp", jwk: "{\"kty\":\"EC\"}", status: .valid,
                contact: ["mailto:a@example.com"], externalKeyID: "kid", createdAt: now))
        try await ledger.createOrder(
            ACMEOrder(
                id: "ord", accountID: "acc", status: .pending,
                identifiers: [ACMEIdentifier(type: .dns, value: "host1.example.com")], authorizationIDs: ["az"],
                notBefore: nil, notAfter: nil, profile: nil, replaces: nil, expires: now.addingTimeInterval(3600),
                createdAt: now),
            authorizations: [
                ACMEAuthorization(
                    id: "az", accountID: "acc", identifier: ACMEIdentifier(type: .dns, value: "host1.example.com"),
                    wildcard: false, status: .pending, expires: now.addingTimeInterval(3600), trusted: true,
                    challenges: [ACMEChallenge(type: .http01, token: "tok", validated: now)])
            ], events: [])
        let nonce = try await ledger.issueNonce(now: now)
        #expect(try await ledger.consumeNonce(nonce, now: now))
        _ = try await ledger.advanceRenewal(serials: ["019abc"], at: now)
    }

    static func digests(_ ledger: any Ledger) async throws -> [String: String] {
        var digests: [String: String] = [:]
        for table in LedgerTables.all {
            let report = try await LedgerMigration.digest(table, of: ledger)
            digests[table.name] = "\(report.rows) \(report.digest)"
        }
        return digests
    }

    @Test(
        "SQLite → PostgreSQL → SQLite with the CLI: every table's rows and digest the same, sealed keys still open, a non-empty target refused, new rows after the copied ones"
    )
    func roundTrip() async throws {
        let key = try LedgerKey(base64: Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString())
        let directory = try Fixtures.temporaryDirectory("signet-migrate")
        let (_, pendingKey) = try KeyAlgorithm.ecdsaP256.generate()
        let original = try CertificateLedger(path: directory + "/original.sqlite", key: key)
        try await Self.populate(original, pendingKey: pendingKey)
        let expected = try await Self.digests(original)
        #expect(expected["certificates"]?.hasPrefix("25 ") == true && expected["acme_orders"]?.hasPrefix("1 ") == true)
        try original.close()

        let server = try PostgresServer.shared.get()
        let postgres = server.url(try server.makeDatabase())
        func migrate(_ from: String, _ to: String) throws -> Tool.Result {
            try Tool.run(Fixtures.signetBinary, ["ledger", "migrate", "--from", from, "--to", to])
        }
        let there = try migrate(directory + "/original.sqlite", postgres)
        #expect(there.succeeded, "\(there.output)\(there.error)")
        #expect(there.output.contains("certificates: 25 rows") && there.output.contains("copied and verified"))
        let again = try migrate(directory + "/original.sqlite", postgres)
        #expect(!again.succeeded && again.error.contains("not empty"), "\(again.error)")

        let back = try migrate(postgres, directory + "/back.sqlite")
        #expect(back.succeeded, "\(back.output)\(back.error)")
        let returned = try CertificateLedger(path: directory + "/back.sqlite", key: key)
        #expect(try await Self.digests(returned) == expected, "the same rows, whatever the backend in between")
        #expect(try await returned.managedCertificate(name: "web")?.pendingKey?.pem == pendingKey, "opens with the key")
        #expect(try await returned.externalKey(id: "kid")?.macKey == [9, 8, 7])
        var byHost = CertificateQuery()
        byHost.dnsName = "a.x7.example.com"
        #expect(
            try await returned.certificates(matching: byHost).entries.map(\.serial) == ["079abc"],
            "the names index rebuilt")
        try returned.close()

        // PostgreSQL's identity columns continue after the copied rows.
        let target = try await PostgresLedger(
            PostgresConnectionSettings(url: postgres), key: key, deadline: PostgresServer.inProcessDeadline,
            logger: Logger(label: "test.postgres"))
        try await target.record(
            CertificateEntry(
                serial: "ff01", issuerKeyID: "ab", subject: "CN=new.example.com", dnsNames: ["new.example.com"],
                ipAddresses: [], publicKeySHA256: "pk", csrSHA256: "csr", profile: .server,
                notBefore: Date(), notAfter: Date().addingTimeInterval(3600), requester: "token:ci", issuedAt: Date(),
                der: [0x30, 0x00]),
            event: AuditEvent(at: Date(), actor: "token:ci", action: "certificate.issue", outcome: .success))
        var newest = CertificateQuery()
        newest.limit = 1
        #expect(try await target.certificates(matching: newest).entries.first?.serial == "ff01", "the newest")
        await target.close()
    }
}
