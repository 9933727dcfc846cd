import GRDB

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension CertificateLedger: LeaseStore {
    /// One upsert: the row changes only if the lease is free, lapsed or the holder's own, so two replicas racing for
    /// it cannot both win.
    public func acquireLease(_ name: String, holder: String, until: Date, now: Date) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO leases (name, holder, expires_ms) VALUES (?1, ?2, ?3)
                    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
                    WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?4
                    """,
                arguments: [name, holder, Self.milliseconds(until), Self.milliseconds(now)])
            return db.changesCount == 1
        }
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM leases WHERE name = ? AND holder = ?", arguments: [name, holder])
        }
    }
}

extension CertificateLedger {
    /// Voids the renewal claims and leases an earlier run left. A SQLite ledger is served by one process at a time,
    /// so whatever it finds claimed was claimed by its own previous run (killed, or stopped mid-renewal): waiting for
    /// those claims to lapse would only delay the renewals it resumes. Called by `signet serve`, never by the CLI.
    public func releaseClaimsOfEarlierRuns() async throws {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE managed_certificates SET claimed_until_ms = NULL WHERE claimed_until_ms IS NOT NULL")
            try db.execute(sql: "DELETE FROM leases")
        }
    }
}
