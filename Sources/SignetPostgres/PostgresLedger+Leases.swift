import PostgresNIO
import SignetLedger

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension PostgresLedger: LeaseStore {
    /// One upsert: the row changes only if the lease is free, lapsed or the holder's own; the row lock orders replicas
    /// racing for it, so exactly one wins.
    public func acquireLease(_ name: String, holder: String, until: Date, now: Date) async throws -> Bool {
        try await transaction { [self] connection in
            try await Self.exists(
                """
                INSERT INTO leases (name, holder, expires_ms) VALUES (\(name), \(holder), \(Self.milliseconds(until)))
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
                WHERE leases.holder = excluded.holder OR leases.expires_ms <= \(Self.milliseconds(now))
                RETURNING holder
                """, on: connection)
        }
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        try await transaction { [self] connection in
            _ = try await connection.query(
                "DELETE FROM leases WHERE name = \(name) AND holder = \(holder)", logger: connection.logger)
        }
    }
}
