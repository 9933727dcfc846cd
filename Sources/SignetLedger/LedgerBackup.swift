import GRDB

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What a backup copied.
public struct LedgerBackupSummary: Sendable, Equatable {
    public var path: String
    public var certificates: Int
    public var auditEvents: Int
}

public enum LedgerBackupError: Error, Equatable, CustomStringConvertible {
    case targetExists(String)
    case noLedger(String)

    public var description: String {
        switch self {
        case .targetExists(let path): "\(path) already exists; a backup never overwrites a file (name a new one)"
        case .noLedger(let path): "there is no ledger at \(path)"
        }
    }
}

extension CertificateLedger {
    /// A consistent copy of the live ledger at `source`, written to `path`, made with SQLite's online backup from one
    /// read transaction: the copy is the ledger as of one commit, while Signet keeps serving and writing (a file copy
    /// of a WAL database is not). The source is opened read-only, so the backup never waits for the write lock a busy
    /// server holds nearly all the time, and never changes the ledger. The copy is 0600 and holds the same sealed
    /// secrets; it is read with the same ledger key, which is backed up separately (never beside the copy). Refuses
    /// to write over an existing file; a failed backup leaves no file behind.
    public static func backup(ledgerAt source: String, to path: String) throws -> LedgerBackupSummary {
        guard FileManager.default.fileExists(atPath: source) else { throw LedgerBackupError.noLedger(source) }
        guard !FileManager.default.fileExists(atPath: path) else { throw LedgerBackupError.targetExists(path) }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        let ledger = try DatabasePool(path: source, configuration: configuration)
        defer { try? ledger.close() }
        LedgerFiles.prepare(path)
        do {
            let copy = try DatabaseQueue(path: path)
            try ledger.backup(to: copy)
            let counts = try copy.read { db in
                (
                    try Int.fetchOne(db, sql: "SELECT count(*) FROM certificates") ?? 0,
                    try Int.fetchOne(db, sql: "SELECT count(*) FROM audit_events") ?? 0
                )
            }
            try copy.close()
            return LedgerBackupSummary(path: path, certificates: counts.0, auditEvents: counts.1)
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
    }
}
