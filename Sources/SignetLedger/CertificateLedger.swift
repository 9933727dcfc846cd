import Crypto
import GRDB
import SignetAuthority
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The record of everything the CA signed, the API tokens, and the audit trail, in one SQLite file (WAL).
public final class CertificateLedger: Sendable {
    /// SQLite's `synchronous` setting. `full` syncs the WAL on every commit, so a committed issuance survives
    /// power loss; `normal` survives a crash of Signet (kill -9) but not of the machine.
    public enum Durability: String, Sendable, CaseIterable {
        case full, normal
    }

    public let path: String
    public let durability: Durability
    let pool: DatabasePool
    /// Concurrent writes share a transaction (and its fsync); each piece is a statement list on the write connection.
    let committer: GroupCommitter<@Sendable (Database) throws -> Void>
    /// The ACME nonce key, read from the ledger once (ACMEStore).
    let nonceKeyCache = Mutex<SymmetricKey?>(nil)
    /// Seals the private keys the ledger holds; nil for callers that never touch them (the CLI's token commands).
    let key: LedgerKey?

    public init(path: String, durability: Durability = .full, key: LedgerKey? = nil) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.foreignKeysEnabled = true
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
            // Small, frequent checkpoints: each one runs inside the commit that crosses the threshold, so its size
            // is what a request occasionally waits for. At SQLite's default of 1,000 pages the p99 at concurrency 8
            // was 15-18 ms; at 128 pages it is under 7 ms with the same throughput (bench/run.sh).
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 128")
            // Deleted and overwritten content (a pending key once delivered, a revoked token's row) is zeroed, not
            // left in free pages.
            try db.execute(sql: "PRAGMA secure_delete = ON")
        }
        self.path = path
        self.durability = durability
        self.key = key
        LedgerFiles.prepare(path)
        self.pool = try DatabasePool(path: path, configuration: configuration)
        try LedgerSchema.migrator.migrate(pool)
        self.committer = GroupCommitter { [pool] batch in
            try await pool.write { db in
                for work in batch { try work(db) }
            }
        }
        if key != nil { try sealPlaintextPendingKeys() }
    }

    /// Transactions group commit has written: fewer than the records when concurrent writes shared them.
    public var groupCommitTransactions: Int {
        get async { await committer.transactions }
    }

    /// A connection setting as the ledger's own connections have it (`synchronous`, `secure_delete`, …).
    public func pragma(_ name: String) async throws -> String? {
        guard name.allSatisfy({ $0.isLetter || $0 == "_" }) else { return nil }
        return try await pool.read { db in try String.fetchOne(db, sql: "PRAGMA \(name)") }
    }

    // MARK: Writing

    /// Records an issued certificate and its audit event in one transaction. Returns once that transaction is durable.
    ///
    /// `issued_at` is kept non-decreasing in insertion order (a clock step backwards records the previous time),
    /// which lets issue-time filters become ranges of `id`, the listing order.
    public func record(_ entry: CertificateEntry, event: AuditEvent, alongside: LedgerWrite? = nil) async throws {
        let dnsJSON = JSONList.encode(entry.dnsNames)
        let ipJSON = JSONList.encode(entry.ipAddresses)
        try await committer.commit { db in
            try Self.refusingTakenSerial(entry.serial) {
                try db.cachedStatement(
                    sql: """
                            INSERT INTO certificates (serial, issuer_key_id, subject, dns_names, ip_addresses, uris, public_key_sha256,
                            csr_sha256, profile, not_before, not_after, requester, issued_at, der, signer_key_version, signer_request_id)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, max(?, coalesce((SELECT max(issued_at) FROM certificates), 0)), ?, ?, ?)
                        """
                ).execute(arguments: [
                    entry.serial, entry.issuerKeyID, entry.subject, dnsJSON, ipJSON, JSONList.encode(entry.uris),
                    entry.publicKeySHA256,
                    entry.csrSHA256, entry.profile.rawValue, Int64(entry.notBefore.timeIntervalSince1970),
                    Int64(entry.notAfter.timeIntervalSince1970), entry.requester, Self.milliseconds(entry.issuedAt),
                    Data(entry.der), entry.signerKeyVersion, entry.signerRequestID,
                ])
            }
            let id = db.lastInsertedRowID
            let insertName = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO certificate_names (certificate_id, name) VALUES (?, ?)")
            for name in entry.dnsNames + entry.ipAddresses + entry.uris {
                try insertName.execute(arguments: [id, name])
            }
            try Self.insert(event, into: db)
            if let alongside { try Self.apply(alongside, in: db) }
        }
    }

    /// A serial already in the ledger is refused by its unique index: said as `serialTaken`, which the issuance
    /// service answers by signing again with a new serial.
    static func refusingTakenSerial(_ serial: String, _ insert: () throws -> Void) throws {
        do {
            try insert()
        } catch let error as DatabaseError
            where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE
            && (error.message ?? "").contains("certificates.serial")
        {
            throw LedgerError.serialTaken(serial)
        }
    }

    /// Records an audit event on its own (a refused request, a token change).
    public func record(_ event: AuditEvent) async throws {
        try await committer.commit { db in try Self.insert(event, into: db) }
    }

    static func insert(_ event: AuditEvent, into db: Database) throws {
        let names = event.names.isEmpty ? nil : JSONList.encode(event.names)
        try db.cachedStatement(
            sql: """
                INSERT INTO audit_events (at_ms, actor, action, outcome, subject, names, reason) VALUES (?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [
            milliseconds(event.at), event.actor, event.action, event.outcome.rawValue, event.subject, names,
            event.reason,
        ])
    }

    // MARK: Reading certificates

    public func certificate(serial: String) async throws -> CertificateEntry? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM certificates WHERE serial = ?", arguments: [serial.lowercased()])
                .map(Self.entry(from:))
        }
    }

    public func certificates(matching query: CertificateQuery, now: Date = Date()) async throws -> CertificatePage {
        var clauses: [String] = []
        var arguments: StatementArguments = []
        if let position = try query.cursorPosition() {
            clauses.append("id < ?")
            arguments += [position]
        }
        if let host = query.dnsName?.lowercased() {
            var names = [host]
            if let wildcard = HostnameRules.coveringWildcard(of: host) { names.append(wildcard) }
            clauses.append(
                "id IN (SELECT certificate_id FROM certificate_names WHERE name IN (\(names.map { _ in "?" }.joined(separator: ", "))))"
            )
            arguments += StatementArguments(names)
        }
        let nowSeconds = Int64(now.timeIntervalSince1970)
        // Without an expiry bound, "+not_after" keeps the planner on the (status, id, not_after) index, which
        // yields rows already in listing order; a range on not_after would sort a quarter of the table instead.
        let expiry = query.expiringBefore == nil ? "+not_after" : "not_after"
        switch query.status {
        case .valid:
            clauses.append("status = 'valid' AND \(expiry) >= ?")
            arguments += [nowSeconds]
        case .expired:
            clauses.append("status = 'valid' AND \(expiry) < ?")
            arguments += [nowSeconds]
        case .revoked:
            clauses.append("status = 'revoked'")
        case nil:
            break
        }
        if let date = query.expiringBefore {
            clauses.append("not_after < ?")
            arguments += [Int64(date.timeIntervalSince1970)]
        }
        // Issue times are non-decreasing in id order, so each bound becomes an id bound found with one index
        // lookup, and the listing walks the primary key instead of sorting a time range.
        if let date = query.issuedAfter {
            clauses.append(
                "id > coalesce((SELECT id FROM certificates WHERE issued_at <= ? ORDER BY issued_at DESC, id DESC LIMIT 1), 0)"
            )
            clauses.append("issued_at > ?")
            arguments += [Self.milliseconds(date), Self.milliseconds(date)]
        }
        if let date = query.issuedBefore {
            clauses.append(
                "id <= (SELECT id FROM certificates WHERE issued_at < ? ORDER BY issued_at DESC, id DESC LIMIT 1)")
            arguments += [Self.milliseconds(date)]
        }
        if let requester = query.requester {
            clauses.append("requester = ?")
            arguments += [requester]
        }
        if let fingerprint = query.publicKeySHA256 {
            clauses.append("public_key_sha256 = ?")
            arguments += [fingerprint.lowercased()]
        }
        let limit = query.boundedLimit
        let whereClause = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        let sql = "SELECT * FROM certificates \(whereClause) ORDER BY id DESC LIMIT \(limit + 1)"
        let finalArguments = arguments
        return try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: sql, arguments: finalArguments)
            let page = rows.prefix(limit)
            let next: String? = rows.count > limit ? page.last.map { String($0["id"] as Int64) } : nil
            return CertificatePage(entries: try page.map(Self.entry(from:)), nextCursor: next)
        }
    }

    /// How many certificates are in each status now, and the earliest expiry among valid ones (for metrics).
    public func summary(now: Date = Date()) async throws -> (counts: [CertificateStatus: Int], earliestExpiry: Date?) {
        let nowSeconds = Int64(now.timeIntervalSince1970)
        return try await pool.read { db in
            let valid =
                try Int.fetchOne(
                    db, sql: "SELECT count(*) FROM certificates WHERE status = 'valid' AND not_after >= ?",
                    arguments: [nowSeconds]) ?? 0
            let expired =
                try Int.fetchOne(
                    db, sql: "SELECT count(*) FROM certificates WHERE status = 'valid' AND not_after < ?",
                    arguments: [nowSeconds]) ?? 0
            let revoked = try Int.fetchOne(db, sql: "SELECT count(*) FROM certificates WHERE status = 'revoked'") ?? 0
            let earliest = try Int64.fetchOne(
                db, sql: "SELECT min(not_after) FROM certificates WHERE status = 'valid' AND not_after >= ?",
                arguments: [nowSeconds])
            return (
                [.valid: valid, .expired: expired, .revoked: revoked],
                earliest.map { Date(timeIntervalSince1970: TimeInterval($0)) }
            )
        }
    }

    public func certificateCount() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM certificates") ?? 0 }
    }

    public func auditEvents(limit: Int = 100) async throws -> [AuditEvent] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit_events ORDER BY id DESC LIMIT ?", arguments: [limit]).map {
                row in
                let names: String? = row["names"]
                return AuditEvent(
                    at: Date(timeIntervalSince1970: Double(row["at_ms"] as Int64) / 1000),
                    actor: row["actor"], action: row["action"],
                    outcome: AuditEvent.Outcome(rawValue: row["outcome"]) ?? .failed,
                    subject: row["subject"],
                    names: try names.map(JSONList.decode) ?? [],
                    reason: row["reason"]
                )
            }
        }
    }

    /// A read and a no-op write transaction: proves the file is readable and the write lock can be taken.
    public func checkHealth() async throws {
        _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
        try await pool.write { db in try db.execute(sql: "SELECT 1") }
    }

    public func close() throws {
        try pool.close()
    }

    // MARK: Tokens

    public func createToken(_ token: TokenEntry) async throws {
        try await pool.write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM tokens WHERE name = ?", arguments: [token.name]) == nil
            else {
                throw LedgerError.tokenExists(token.name)
            }
            try db.execute(
                sql: """
                    INSERT INTO tokens (name, secret_sha256, allowed_names, allowed_profiles, max_lifetime_seconds, created_at, allowed_targets, auditor,
                        administrator)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    token.name, token.secretSHA256, JSONList.encode(token.allowedNames),
                    JSONList.encode(token.allowedProfiles.map(\.rawValue)),
                    token.maximumLifetime.components.seconds, Int64(token.createdAt.timeIntervalSince1970),
                    JSONList.encode(token.allowedTargets), token.auditor, token.administrator,
                ])
            try Self.insert(
                AuditEvent(
                    at: token.createdAt, actor: "cli", action: "token.create", outcome: .success, subject: token.name,
                    names: token.allowedNames), into: db)
        }
    }

    public func tokens() async throws -> [TokenEntry] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM tokens ORDER BY name").map(Self.token(from:))
        }
    }

    public func token(name: String) async throws -> TokenEntry? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM tokens WHERE name = ?", arguments: [name]).map(Self.token(from:))
        }
    }

    public func token(secretSHA256: String) async throws -> TokenEntry? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM tokens WHERE secret_sha256 = ?", arguments: [secretSHA256]).map(
                Self.token(from:))
        }
    }

    /// Marks a token revoked. Its row stays, so the name cannot be reused to impersonate the old holder in the audit trail.
    public func revokeToken(name: String, at date: Date = Date()) async throws {
        let changed = try await pool.write { db in
            try db.execute(
                sql: "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                arguments: [Int64(date.timeIntervalSince1970), name])
            let changes = db.changesCount
            if changes > 0 {
                try Self.insert(
                    AuditEvent(at: date, actor: "cli", action: "token.revoke", outcome: .success, subject: name),
                    into: db)
            }
            return changes
        }
        guard changed > 0 else { throw LedgerError.noSuchToken(name) }
    }

    // MARK: Rows

    static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
    }

    private static func decodeList(_ text: String) throws -> [String] {
        try JSONList.decode(text)
    }

    static func entry(from row: Row) throws -> CertificateEntry {
        let profileText: String = row["profile"]
        guard let profile = CertificateProfile(rawValue: profileText) else {
            throw LedgerError.corrupt("unknown profile \(profileText)")
        }
        let der: Data = row["der"]
        var entry = CertificateEntry(
            serial: row["serial"], issuerKeyID: row["issuer_key_id"], subject: row["subject"],
            dnsNames: try decodeList(row["dns_names"]), ipAddresses: try decodeList(row["ip_addresses"]),
            publicKeySHA256: row["public_key_sha256"], csrSHA256: row["csr_sha256"], profile: profile,
            notBefore: Date(timeIntervalSince1970: TimeInterval(row["not_before"] as Int64)),
            notAfter: Date(timeIntervalSince1970: TimeInterval(row["not_after"] as Int64)),
            requester: row["requester"],
            issuedAt: Date(timeIntervalSince1970: Double(row["issued_at"] as Int64) / 1000),
            der: Array(der)
        )
        entry.uris = try decodeList(row["uris"])
        entry.storedStatus = CertificateEntry.StoredStatus(rawValue: row["status"]) ?? .valid
        entry.revokedAt = (row["revoked_at"] as Int64?).map { Date(timeIntervalSince1970: TimeInterval($0)) }
        entry.revocationReason = row["revocation_reason"]
        entry.signerKeyVersion = row["signer_key_version"]
        entry.signerRequestID = row["signer_request_id"]
        return entry
    }

    private static func token(from row: Row) throws -> TokenEntry {
        TokenEntry(
            name: row["name"], secretSHA256: row["secret_sha256"],
            allowedNames: try decodeList(row["allowed_names"]),
            allowedProfiles: try decodeList(row["allowed_profiles"]).compactMap(CertificateProfile.init(rawValue:)),
            maximumLifetime: .seconds(row["max_lifetime_seconds"] as Int64),
            createdAt: Date(timeIntervalSince1970: TimeInterval(row["created_at"] as Int64)),
            revokedAt: (row["revoked_at"] as Int64?).map { Date(timeIntervalSince1970: TimeInterval($0)) },
            allowedTargets: try decodeList(row["allowed_targets"]),
            auditor: row["auditor"],
            administrator: row["administrator"]
        )
    }
}

public enum LedgerError: Error, Equatable, CustomStringConvertible {
    case invalidCursor(String)
    case tokenExists(String)
    case noSuchToken(String)
    case corrupt(String)
    case managedCertificateExists(String)
    /// Another managed certificate already delivers into this Secret (`cluster/namespace/secretName`).
    case secretTaken(target: String, by: String)
    case noSuchManagedCertificate(String)
    /// A certificate with this serial is already recorded (by this replica or another): never a second one.
    case serialTaken(String)
    /// The database cannot be reached now (a server down or restarting); nothing was written. Retry later.
    case unavailable(String)

    public var description: String {
        switch self {
        case .invalidCursor(let cursor): "cursor '\(cursor)' is not one this server handed out"
        case .tokenExists(let name):
            "a token named '\(name)' already exists (names are never reused, even after revocation)"
        case .noSuchToken(let name): "no active token named '\(name)'"
        case .corrupt(let what): "the ledger holds an unreadable row: \(what)"
        case .managedCertificateExists(let name):
            "a managed certificate named '\(name)' already exists; PATCH it to change it"
        case let .secretTaken(target, name):
            "the managed certificate '\(name)' already delivers into Secret \(target); one Secret has one owner (delete '\(name)' first, or pick another secretName)"
        case .noSuchManagedCertificate(let name): "no managed certificate named '\(name)'"
        case .serialTaken(let serial): "a certificate with serial \(serial) is already recorded"
        case .unavailable(let why): "the ledger's database is unavailable: \(why)"
        }
    }
}

/// Lists of strings stored as JSON arrays (names, patterns), so SQLite's JSON functions can read them too.
/// Encoding is hand-written because it runs for every issuance and Foundation's JSONEncoder showed in profiles.
enum JSONList {
    static func encode(_ items: [String]) -> String {
        var out = "["
        for (index, item) in items.enumerated() {
            if index > 0 { out += "," }
            out += "\""
            for scalar in item.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case _ where scalar.value < 0x20:
                    out += (scalar.value < 0x10 ? "\\u000" : "\\u00") + String(scalar.value, radix: 16)
                default: out.unicodeScalars.append(scalar)
                }
            }
            out += "\""
        }
        return out + "]"
    }

    static func decode(_ text: String) throws -> [String] {
        try JSONDecoder().decode([String].self, from: Data(text.utf8))
    }
}
