import Foundation
import Logging
import SignetAuthority
import SignetLedger
import SignetManaged
import SignetPostgres
import Testing

/// The PostgreSQL ledger where several Signet replicas share one database: migrations from replicas starting at once,
/// concurrent writes from each, the uniqueness the database (not a replica) enforces; and its connection settings.
@Suite("PostgreSQL ledger: several replicas on one database")
struct PostgresLedgerTests {
    let logger = Logger(label: "test.postgres")

    func replicas(_ count: Int, database: String) async throws -> [PostgresLedger] {
        let server = try PostgresServer.shared.get()
        return try await withThrowingTaskGroup(of: PostgresLedger.self) { group in
            for _ in 0..<count {
                group.addTask {
                    try await PostgresLedger(
                        PostgresConnectionSettings(url: server.url(database)),
                        deadline: PostgresServer.inProcessDeadline,
                        logger: logger)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    func entry(_ serial: String, requester: String) -> CertificateEntry {
        let now = Date()
        return CertificateEntry(
            serial: serial, issuerKeyID: "ab", subject: "CN=\(serial).example.com", dnsNames: ["\(serial).example.com"],
            ipAddresses: [], publicKeySHA256: "pk-\(serial)", csrSHA256: "csr", profile: .server,
            notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(86_400), requester: requester,
            issuedAt: now, der: [0x30, 0x00])
    }

    @Test(
        "three replicas starting at once on an empty database: one migrates, all serve; concurrent issuances from all three are all recorded, in an order whose issue times never go back; a serial is recorded once"
    )
    func replicasShareOneDatabase() async throws {
        let server = try PostgresServer.shared.get()
        let database = try server.makeDatabase()
        let ledgers = try await replicas(3, database: database)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, ledger) in ledgers.enumerated() {
                group.addTask {
                    for number in 0..<40 {
                        let serial = String(format: "%02x%04x", index, number)
                        try await ledger.record(
                            entry(serial, requester: "replica-\(index)"),
                            event: AuditEvent(
                                at: Date(), actor: "replica-\(index)", action: "certificate.issue", outcome: .success,
                                subject: serial),
                            alongside: nil)
                    }
                }
            }
            try await group.waitForAll()
        }
        var listed: [CertificateEntry] = []
        var query = CertificateQuery()
        query.limit = 50
        repeat {
            let page = try await ledgers[1].certificates(matching: query, now: Date())
            listed += page.entries
            query.cursor = page.nextCursor
        } while query.cursor != nil
        #expect(listed.count == 120, "every replica's issuances, read from any replica")
        #expect(Set(listed.map(\.serial)).count == 120)
        let times = listed.map(\.issuedAt)
        #expect(zip(times, times.dropFirst()).allSatisfy { $0 >= $1 }, "newest first, issue times never go back")
        await #expect(throws: (any Error).self, "a serial is unique across replicas") {
            try await ledgers[2].record(
                entry("000000", requester: "replica-2"),
                event: AuditEvent(
                    at: Date(), actor: "replica-2", action: "certificate.issue", outcome: .success, subject: "000000"),
                alongside: nil)
        }
        #expect(try await ledgers[0].certificate(serial: "000000")?.requester == "replica-0")
        #expect(try await ledgers[0].auditEvents(limit: 1000).count == 120, "nothing of the refused one was written")
        for ledger in ledgers { await ledger.close() }
    }

    @Test(
        "the same token name created on two replicas at once: one token, the other refused by name; a revocation on one is seen by the other; CRL numbers only go up whichever replica publishes"
    )
    func uniquenessAcrossReplicas() async throws {
        let server = try PostgresServer.shared.get()
        let ledgers = try await replicas(2, database: try server.makeDatabase())
        let results = await withTaskGroup(of: Result<Void, any Error>.self) { group in
            for (index, ledger) in ledgers.enumerated() {
                group.addTask {
                    do {
                        try await ledger.createToken(
                            TokenEntry(
                                name: "ci", secretSHA256: "digest-\(index)", allowedNames: ["*.example.com"],
                                allowedProfiles: [.server], maximumLifetime: .seconds(3600), createdAt: Date()))
                        return .success(())
                    } catch {
                        return .failure(error)
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.filter { (try? $0.get()) != nil }.count == 1)
        #expect(
            results.contains {
                if case .failure(let error) = $0 { return error as? LedgerError == .tokenExists("ci") }
                return false
            })
        let digest = try #require(try await ledgers[0].token(name: "ci")).secretSHA256
        try await ledgers[1].revokeToken(name: "ci", at: Date())
        #expect(try await ledgers[0].token(secretSHA256: digest)?.revokedAt != nil)

        let now = Date()
        let published = await withTaskGroup(of: Bool.self) { group in
            for number in Int64(1)...20 {
                group.addTask {
                    (try? await ledgers[Int(number) % 2].storeCRL(
                        StoredCRL(
                            issuerKeyID: "ab", number: number, thisUpdate: now,
                            nextUpdate: now.addingTimeInterval(60), entries: 0, der: [0x30, UInt8(number)]))) ?? false
                }
            }
            return await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
        }
        #expect(published >= 1)
        #expect(try await ledgers[1].latestCRL(issuerKeyID: "ab")?.number == 20, "the highest number stays")
        for ledger in ledgers { await ledger.close() }
    }

    @Test(
        "a renewal's pending key rests sealed with the ledger key (no PEM in the database); a ledger opened without the key cannot read it"
    )
    func pendingKeysAtRest() async throws {
        let server = try PostgresServer.shared.get()
        let database = try server.makeDatabase()
        let key = try LedgerKey(base64: Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString())
        let ledger = try await PostgresLedger(
            PostgresConnectionSettings(url: server.url(database)), key: key, deadline: PostgresServer.inProcessDeadline,
            logger: logger)
        let spec = ManagedCertificateSpec(
            dnsNames: ["web.example.com"], durationSeconds: 86_400,
            target: DeliveryTarget(cluster: "c", namespace: "n", secretName: "web-tls"))
        try await ledger.createManagedCertificate(
            ManagedCertificateRecord(name: "web", owner: "token:ci", spec: spec, createdAt: Date()),
            event: AuditEvent(at: Date(), actor: "token:ci", action: "managed.create", outcome: .success))
        let (_, pem) = try KeyAlgorithm.ecdsaP256.generate()
        try await ledger.beginRenewal(
            name: "web", key: .init(pem: pem, publicKeySHA256: "pk", generation: 1), at: Date())
        #expect(try await ledger.managedCertificate(name: "web")?.pendingKey?.pem == pem)
        let stored = try Tool.run(
            server.binaries + "/psql",
            [
                "-h", "127.0.0.1", "-p", String(server.port), "-U", server.user, "-d", database, "-At", "-c",
                "SELECT pending_key FROM managed_certificates",
            ]
        ).output
        #expect(
            LedgerKey.isSealed(stored.trimmingCharacters(in: .whitespacesAndNewlines)), "sealed: \(stored.prefix(20))")
        #expect(!stored.contains("PRIVATE KEY"))
        let keyless = try await PostgresLedger(
            PostgresConnectionSettings(url: server.url(database)), deadline: PostgresServer.inProcessDeadline,
            logger: logger)
        await #expect(throws: LedgerKeyError.noKey) { _ = try await keyless.managedCertificate(name: "web") }
        await ledger.close()
        await keyless.close()
    }

    @Test(
        "connection settings: a libpq URL, its TLS mode and CA; a password in the URL, an unknown parameter, sslmode=require refused"
    )
    func settings() throws {
        let settings = try PostgresConnectionSettings(
            url: "postgres://signet@db.example.com:6432/ledger?sslmode=verify-full&sslrootcert=/etc/signet/db-ca.pem",
            password: "secret")
        #expect(settings.host == "db.example.com" && settings.port == 6432 && settings.database == "ledger")
        #expect(settings.tlsMode == .verifyFull && settings.rootCertificatePath == "/etc/signet/db-ca.pem")
        #expect(!settings.description.contains("secret"), "the password never appears: \(settings)")
        #expect(try PostgresConnectionSettings(url: "postgresql://u@h/d").tlsMode == .verifyFull, "verified by default")
        for bad in [
            "postgres://u:pw@h/d", "postgres://u@h/d?sslmode=require", "postgres://u@h/d?colour=blue", "postgres://h/d",
            "mysql://u@h/d", "postgres://u@h/",
        ] {
            #expect(throws: PostgresSettingsError.self, "\(bad)") { try PostgresConnectionSettings(url: bad) }
        }
    }
}
