import Logging
import SignetLedger
import SignetPostgres

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Which backend holds the ledger, from the `database` setting: a file path is the embedded SQLite ledger (one
/// process), a `postgres://` URL is PostgreSQL (any number of replicas). The one place a backend is chosen; everything
/// else sees the `Ledger` protocols.
public enum LedgerDatabase: Sendable, Equatable, CustomStringConvertible {
    case sqlite(path: String, durability: CertificateLedger.Durability)
    case postgres(PostgresConnectionSettings)

    /// `password` (from `databasePasswordFile` or SIGNET_DATABASE_PASSWORD) is only for PostgreSQL.
    public init(_ text: String, password: String?, durability: CertificateLedger.Durability) throws {
        if Self.isPostgresURL(text) {
            do {
                self = .postgres(try PostgresConnectionSettings(url: text, password: password))
            } catch {
                throw ConfigurationError("database: \(error)")
            }
        } else {
            guard password == nil else {
                throw ConfigurationError(
                    "a database password is set, but the database is the SQLite file \(text): give a postgres:// URL")
            }
            self = .sqlite(path: text, durability: durability)
        }
    }

    /// Where the ledger is, without secrets.
    public var description: String {
        switch self {
        case .sqlite(let path, _): path
        case .postgres(let settings): settings.description
        }
    }

    /// Whether the `database` setting names PostgreSQL rather than a SQLite file.
    public static func isPostgresURL(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    /// Opens the ledger and brings its schema up to date. `key` seals the private keys it holds; commands that never
    /// touch them pass nil. `serving`: opened by `signet serve`, which on SQLite is the only server of the file, so
    /// renewal claims and leases left by its previous run are void.
    public func open(key: LedgerKey?, serving: Bool = false, logger: Logger) async throws -> any Ledger {
        switch self {
        case let .sqlite(path, durability):
            let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            if !directory.isEmpty {
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
            let ledger = try CertificateLedger(path: path, durability: durability, key: key)
            if serving { try await ledger.releaseClaimsOfEarlierRuns() }
            return ledger
        case .postgres(let settings):
            return try await PostgresLedger(settings, key: key, logger: logger)
        }
    }
}
