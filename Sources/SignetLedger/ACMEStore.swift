import Crypto
import GRDB
import SignetACME
import SignetAuthority
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What the ACME front end keeps: nonces, external account keys, accounts, orders and authorizations, renewal
/// information. A narrow seam, so that another database implements it without touching the front end.
public protocol ACMEStore: Sendable {
    func issueNonce(now: Date) async throws -> String
    func consumeNonce(_ value: String, now: Date) async throws -> Bool

    /// Records a new EAB key, with its audit event in the same transaction.
    func createExternalKey(_ key: ACMEExternalKey, macKey: [UInt8], actor: String) async throws
    func externalKeys(directory: String?) async throws -> [ACMEExternalKey]
    func externalKey(id: String) async throws -> (key: ACMEExternalKey, macKey: [UInt8])?
    func revokeExternalKey(id: String, at: Date, actor: String) async throws -> Bool

    /// Creates the account, or returns the one that already has its key in that directory (`created` false).
    func createAccount(_ account: ACMEAccount) async throws -> (account: ACMEAccount, created: Bool)
    func account(id: String) async throws -> ACMEAccount?
    func account(directory: String, thumbprint: String) async throws -> ACMEAccount?
    func accounts(directory: String?) async throws -> [ACMEAccount]
    func updateAccount(id: String, contact: [String]?, status: AccountStatus?) async throws -> ACMEAccount?
    /// Gives the account a new key; returns the id of another account holding that key instead, if there is one.
    func changeAccountKey(id: String, jwk: String, thumbprint: String) async throws -> String?

    func reusableAuthorization(accountID: String, identifier: ACMEIdentifier, wildcard: Bool, now: Date) async throws
        -> ACMEAuthorization?
    func createOrder(_ order: ACMEOrder, authorizations: [ACMEAuthorization], events: [AuditEvent]) async throws
    func order(id: String) async throws -> ACMEOrder?
    func orders(accountID: String, limit: Int) async throws -> [String]
    /// In the order of `ids`; unknown ids are left out.
    func authorizations(ids: [String]) async throws -> [ACMEAuthorization]
    /// Replaces an authorization's stored status and challenges, if it still has `expected` status.
    func updateAuthorization(_ authorization: ACMEAuthorization, expected: AuthorizationStatus) async throws -> Bool
    func challengesInProgress() async throws -> [ACMEAuthorization]
    /// Moves an order from `pending`/`ready` to `processing`; false if another finalize got there first.
    func beginFinalization(orderID: String) async throws -> Bool
    func failOrder(orderID: String, error: ACMEStoredProblem?, invalid: Bool) async throws
    /// Orders that replace `certificateID` and are not invalid.
    func replacingOrders(certificateID: String) async throws -> [String]

    func advanceRenewal(serials: [String], at: Date) async throws -> Int
    func renewalAdvancedAt(serial: String) async throws -> Date?

    /// Forgets spent nonces, and orders and authorizations that expired more than `retention` ago unfinished.
    func pruneACME(now: Date, retention: Duration) async throws -> Int
}

extension ACMEStore {
    public func authorization(id: String) async throws -> ACMEAuthorization? {
        try await authorizations(ids: [id]).first
    }
}

extension [ACMEAuthorization] {
    /// The authorizations a query found, in the order of `ids` (an order's), unknown ids left out.
    public func ordered(as ids: [String]) -> [ACMEAuthorization] {
        let byID = Dictionary(map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        return ids.compactMap { byID[$0] }
    }
}

extension CertificateLedger: ACMEStore {
    // MARK: Nonces

    /// Nonces are stamped by the ledger's nonce key (`ACMENonce`): issuing one writes nothing. Using one inserts it
    /// into the spent set (until it expires), so each is accepted once.
    public func issueNonce(now: Date = Date()) async throws -> String {
        ACMENonce.make(key: try await nonceKey(), nowMilliseconds: Self.milliseconds(now))
    }

    public func consumeNonce(_ value: String, now: Date = Date()) async throws -> Bool {
        guard
            let expires = ACMENonce.expiry(
                of: value, key: try await nonceKey(), nowMilliseconds: Self.milliseconds(now))
        else { return false }
        return try await commitReturning { db in
            try db.cachedStatement(
                sql: "INSERT INTO acme_nonces (value, expires_ms) VALUES (?, ?) ON CONFLICT DO NOTHING"
            )
            .execute(arguments: [value, expires])
            return db.changesCount == 1
        }
    }

    /// The nonce key: created once per ledger, shared by every process that opens it.
    private func nonceKey() async throws -> SymmetricKey {
        if let key = nonceKeyCache.withLock({ $0 }) { return key }
        let bytes = try await pool.write { db -> Data in
            if let existing = try Data.fetchOne(
                try db.cachedStatement(sql: "SELECT value FROM acme_settings WHERE name = 'nonce-key'"))
            {
                return existing
            }
            let fresh = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
            try db.execute(sql: "INSERT INTO acme_settings (name, value) VALUES ('nonce-key', ?)", arguments: [fresh])
            return fresh
        }
        let key = SymmetricKey(data: bytes)
        nonceKeyCache.withLock { $0 = key }
        return key
    }

    /// Runs `work` in a group-committed transaction and returns what it computed.
    func commitReturning<T: Sendable>(_ work: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let result = Mutex<T?>(nil)
        try await committer.commit { db in
            let value = try work(db)
            result.withLock { $0 = value }
        }
        guard let value = result.withLock({ $0 }) else {
            throw LedgerError.corrupt("a committed write returned nothing")
        }
        return value
    }

    // MARK: External account keys

    public func createExternalKey(_ key: ACMEExternalKey, macKey: [UInt8], actor: String) async throws {
        guard let ledgerKey = self.key else { throw LedgerError.corrupt("EAB keys need the ledger key to be sealed") }
        let sealed = try ledgerKey.seal(Base64URL.encode(macKey), binding: "acme-eab:" + key.keyID)
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO acme_eab_keys (key_id, directory, label, allowed_names, sealed_mac_key, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    key.keyID, key.directory, key.label, JSONList.encode(key.allowedNames), sealed,
                    Self.milliseconds(key.createdAt),
                ])
            try Self.insert(
                AuditEvent(
                    at: key.createdAt, actor: actor, action: "acme.eab.create", outcome: .success, subject: key.keyID,
                    names: key.allowedNames, reason: "directory \(key.directory), label \(key.label)"), into: db)
        }
    }

    public func externalKeys(directory: String?) async throws -> [ACMEExternalKey] {
        try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(
                    sql: "SELECT * FROM acme_eab_keys WHERE ?1 IS NULL OR directory = ?1 ORDER BY created_at_ms"),
                arguments: [directory]
            )
            .map(Self.externalKey(from:))
        }
    }

    public func externalKey(id: String) async throws -> (key: ACMEExternalKey, macKey: [UInt8])? {
        guard
            let row = try await pool.read({ db in
                try Row.fetchOne(
                    try db.cachedStatement(sql: "SELECT * FROM acme_eab_keys WHERE key_id = ?"), arguments: [id])
            })
        else {
            return nil
        }
        guard let ledgerKey = self.key else { throw LedgerError.corrupt("EAB keys need the ledger key to be opened") }
        let text = try ledgerKey.open(row["sealed_mac_key"], binding: "acme-eab:" + id)
        guard let mac = Base64URL.decode(text) else {
            throw LedgerError.corrupt("EAB key \(id) does not open to base64url")
        }
        return (try Self.externalKey(from: row), Array(mac))
    }

    public func revokeExternalKey(id: String, at date: Date = Date(), actor: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE acme_eab_keys SET revoked_at_ms = ? WHERE key_id = ? AND revoked_at_ms IS NULL",
                arguments: [Self.milliseconds(date), id])
            guard db.changesCount == 1 else { return false }
            try Self.insert(
                AuditEvent(at: date, actor: actor, action: "acme.eab.revoke", outcome: .success, subject: id), into: db)
            return true
        }
    }

    private static func externalKey(from row: Row) throws -> ACMEExternalKey {
        ACMEExternalKey(
            keyID: row["key_id"], directory: row["directory"], label: row["label"],
            allowedNames: try JSONList.decode(row["allowed_names"]),
            createdAt: date(milliseconds: row["created_at_ms"]),
            revokedAt: (row["revoked_at_ms"] as Int64?).map(date(milliseconds:))
        )
    }

    // MARK: Accounts

    private static let accountColumns = """
        a.*, k.label AS eab_label, k.allowed_names AS eab_allowed_names, k.revoked_at_ms AS eab_revoked_at_ms
        FROM acme_accounts a LEFT JOIN acme_eab_keys k ON k.key_id = a.eab_key_id
        """

    public func createAccount(_ account: ACMEAccount) async throws -> (account: ACMEAccount, created: Bool) {
        try await pool.write { db in
            if let existing = try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT \(Self.accountColumns) WHERE a.directory = ? AND a.thumbprint = ?"),
                arguments: [account.directory, account.thumbprint])
            {
                return (try Self.account(from: existing), false)
            }
            try db.execute(
                sql: """
                    INSERT INTO acme_accounts (id, directory, thumbprint, jwk, status, contact, eab_key_id, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    account.id, account.directory, account.thumbprint, account.jwk, account.status.rawValue,
                    JSONList.encode(account.contact), account.externalKeyID, Self.milliseconds(account.createdAt),
                ])
            try Self.insert(
                AuditEvent(
                    at: account.createdAt, actor: "acme:\(account.directory)/\(account.id)",
                    action: "acme.account.create", outcome: .success,
                    subject: account.id, reason: account.externalKeyID.map { "bound to EAB key \($0)" }), into: db)
            guard
                let row = try Row.fetchOne(
                    try db.cachedStatement(sql: "SELECT \(Self.accountColumns) WHERE a.id = ?"), arguments: [account.id]
                )
            else {
                throw LedgerError.corrupt("account \(account.id) vanished")
            }
            return (try Self.account(from: row), true)
        }
    }

    public func account(id: String) async throws -> ACMEAccount? {
        try await pool.read { db in
            try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT \(Self.accountColumns) WHERE a.id = ?"), arguments: [id]
            ).map(Self.account(from:))
        }
    }

    public func account(directory: String, thumbprint: String) async throws -> ACMEAccount? {
        try await pool.read { db in
            try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT \(Self.accountColumns) WHERE a.directory = ? AND a.thumbprint = ?"),
                arguments: [directory, thumbprint]
            )
            .map(Self.account(from:))
        }
    }

    public func accounts(directory: String?) async throws -> [ACMEAccount] {
        try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(
                    sql: "SELECT \(Self.accountColumns) WHERE ?1 IS NULL OR a.directory = ?1 ORDER BY a.created_at_ms"),
                arguments: [directory]
            )
            .map(Self.account(from:))
        }
    }

    public func updateAccount(id: String, contact: [String]?, status: AccountStatus?) async throws -> ACMEAccount? {
        try await pool.write { db in
            if let contact {
                try db.execute(
                    sql: "UPDATE acme_accounts SET contact = ? WHERE id = ? AND status = 'valid'",
                    arguments: [JSONList.encode(contact), id])
            }
            if let status {
                try db.execute(
                    sql: "UPDATE acme_accounts SET status = ? WHERE id = ? AND status = 'valid'",
                    arguments: [status.rawValue, id])
                if db.changesCount == 1 {
                    // A deactivated account's pending authorizations can never complete (§7.3.6).
                    try db.execute(
                        sql:
                            "UPDATE acme_authorizations SET status = 'deactivated' WHERE account_id = ? AND status IN ('pending', 'valid')",
                        arguments: [id])
                    try Self.insert(
                        AuditEvent(
                            at: Date(), actor: "acme:\(id)", action: "acme.account.\(status.rawValue)",
                            outcome: .success, subject: id), into: db)
                }
            }
            return try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT \(Self.accountColumns) WHERE a.id = ?"), arguments: [id]
            ).map(Self.account(from:))
        }
    }

    public func changeAccountKey(id: String, jwk: String, thumbprint: String) async throws -> String? {
        try await pool.write { db in
            let directory = try String.fetchOne(
                try db.cachedStatement(sql: "SELECT directory FROM acme_accounts WHERE id = ?"), arguments: [id])
            if let other = try String.fetchOne(
                try db.cachedStatement(sql: "SELECT id FROM acme_accounts WHERE directory = ? AND thumbprint = ?"),
                arguments: [directory, thumbprint])
            {
                return other
            }
            try db.execute(
                sql: "UPDATE acme_accounts SET jwk = ?, thumbprint = ? WHERE id = ? AND status = 'valid'",
                arguments: [jwk, thumbprint, id])
            try Self.insert(
                AuditEvent(
                    at: Date(), actor: "acme:\(id)", action: "acme.account.key-change", outcome: .success, subject: id,
                    reason: "new key \(thumbprint)"), into: db)
            return nil
        }
    }

    private static func account(from row: Row) throws -> ACMEAccount {
        guard let status = AccountStatus(rawValue: row["status"]) else {
            throw LedgerError.corrupt("account status \(String(describing: row["status"]))")
        }
        var account = ACMEAccount(
            id: row["id"], directory: row["directory"], thumbprint: row["thumbprint"], jwk: row["jwk"], status: status,
            contact: try JSONList.decode(row["contact"]), externalKeyID: row["eab_key_id"],
            createdAt: date(milliseconds: row["created_at_ms"])
        )
        account.label = row["eab_label"]
        account.allowedNames = try (row["eab_allowed_names"] as String?).map(JSONList.decode) ?? []
        account.externalKeyRevoked = (row["eab_revoked_at_ms"] as Int64?) != nil
        return account
    }

    // MARK: Orders and authorizations

    public func reusableAuthorization(accountID: String, identifier: ACMEIdentifier, wildcard: Bool, now: Date)
        async throws -> ACMEAuthorization?
    {
        try await pool.read { db in
            try Row.fetchOne(
                try db.cachedStatement(
                    sql: """
                        SELECT * FROM acme_authorizations
                        WHERE account_id = ? AND identifier_value = ? AND status = 'valid' AND expires_ms > ? AND identifier_type = ? AND wildcard = ?
                        ORDER BY expires_ms DESC LIMIT 1
                        """),
                arguments: [
                    accountID, identifier.value, Self.milliseconds(now) + 3_600_000, identifier.type.rawValue, wildcard,
                ]
            )
            .map(Self.authorization(from:))
        }
    }

    public func createOrder(_ order: ACMEOrder, authorizations: [ACMEAuthorization], events: [AuditEvent] = [])
        async throws
    {
        let identifiers = try ACMEJSON.encode(order.identifiers)
        let authorizationIDs = JSONList.encode(order.authorizationIDs)
        let rows = try authorizations.map { ($0, try ACMEJSON.encode($0.challenges)) }
        try await committer.commit { db in
            for (authorization, challenges) in rows {
                try db.cachedStatement(
                    sql: """
                        INSERT INTO acme_authorizations (id, account_id, identifier_type, identifier_value, wildcard, status, expires_ms, trusted, challenges)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """
                ).execute(arguments: [
                    authorization.id, authorization.accountID, authorization.identifier.type.rawValue,
                    authorization.identifier.value,
                    authorization.wildcard, authorization.status.rawValue, Self.milliseconds(authorization.expires),
                    authorization.trusted, challenges,
                ])
            }
            try db.cachedStatement(
                sql: """
                    INSERT INTO acme_orders (id, account_id, status, identifiers, authorizations, not_before_ms, not_after_ms, profile, replaces, expires_ms, created_at_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [
                order.id, order.accountID, order.status.rawValue, identifiers, authorizationIDs,
                order.notBefore.map(Self.milliseconds),
                order.notAfter.map(Self.milliseconds), order.profile, order.replaces, Self.milliseconds(order.expires),
                Self.milliseconds(order.createdAt),
            ])
            for event in events { try Self.insert(event, into: db) }
        }
    }

    public func order(id: String) async throws -> ACMEOrder? {
        try await pool.read { db in
            try Row.fetchOne(try db.cachedStatement(sql: "SELECT * FROM acme_orders WHERE id = ?"), arguments: [id])
                .map(Self.order(from:))
        }
    }

    public func orders(accountID: String, limit: Int) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(
                try db.cachedStatement(
                    sql: "SELECT id FROM acme_orders WHERE account_id = ? ORDER BY created_at_ms DESC LIMIT ?"),
                arguments: [accountID, limit])
        }
    }

    public func authorizations(ids: [String]) async throws -> [ACMEAuthorization] {
        guard !ids.isEmpty else { return [] }
        let found = try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(
                    sql:
                        "SELECT * FROM acme_authorizations WHERE id IN (\(ids.map { _ in "?" }.joined(separator: ",")))"
                ), arguments: StatementArguments(ids)
            )
            .map(Self.authorization(from:))
        }
        return found.ordered(as: ids)
    }

    public func updateAuthorization(_ authorization: ACMEAuthorization, expected: AuthorizationStatus) async throws
        -> Bool
    {
        let challenges = try ACMEJSON.encode(authorization.challenges)
        return try await commitReturning { db in
            try db.cachedStatement(
                sql:
                    "UPDATE acme_authorizations SET status = ?, challenges = ?, expires_ms = ? WHERE id = ? AND status = ?"
            )
            .execute(arguments: [
                authorization.status.rawValue, challenges, Self.milliseconds(authorization.expires), authorization.id,
                expected.rawValue,
            ])
            return db.changesCount == 1
        }
    }

    public func challengesInProgress() async throws -> [ACMEAuthorization] {
        try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(
                    sql:
                        "SELECT * FROM acme_authorizations WHERE status = 'pending' AND challenges LIKE '%\"processing\"%'"
                )
            )
            .map(Self.authorization(from:))
        }
    }

    public func beginFinalization(orderID: String) async throws -> Bool {
        try await commitReturning { db in
            try db.cachedStatement(
                sql: "UPDATE acme_orders SET status = 'processing' WHERE id = ? AND status IN ('pending', 'ready')"
            ).execute(arguments: [orderID])
            return db.changesCount == 1
        }
    }

    /// Applies a front end's write inside the issuance's transaction (`record(_:event:alongside:)`).
    static func apply(_ write: LedgerWrite, in db: Database) throws {
        switch write {
        case let .completeOrder(orderID, serial):
            try db.cachedStatement(
                sql:
                    "UPDATE acme_orders SET status = 'valid', certificate_serial = ? WHERE id = ? AND status = 'processing'"
            )
            .execute(arguments: [serial, orderID])
            guard db.changesCount == 1 else {
                throw LedgerError.corrupt("order \(orderID) was not processing when its certificate was recorded")
            }
        }
    }

    public func failOrder(orderID: String, error: ACMEStoredProblem?, invalid: Bool) async throws {
        let problem = try error.map(ACMEJSON.encode)
        try await committer.commit { db in
            try db.cachedStatement(
                sql: "UPDATE acme_orders SET status = ?, error = ? WHERE id = ? AND status = 'processing'"
            )
            .execute(arguments: [invalid ? "invalid" : "ready", problem, orderID])
        }
    }

    public func replacingOrders(certificateID: String) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(
                try db.cachedStatement(
                    sql: "SELECT id FROM acme_orders WHERE replaces = ? AND status != 'invalid' AND expires_ms > ?"),
                arguments: [certificateID, Self.milliseconds(Date())])
        }
    }

    private static func authorization(from row: Row) throws -> ACMEAuthorization {
        guard let type = ACMEIdentifier.Kind(rawValue: row["identifier_type"]),
            let status = AuthorizationStatus(rawValue: row["status"])
        else {
            throw LedgerError.corrupt("authorization \(String(describing: row["id"]))")
        }
        return ACMEAuthorization(
            id: row["id"], accountID: row["account_id"],
            identifier: ACMEIdentifier(type: type, value: row["identifier_value"]),
            wildcard: row["wildcard"], status: status, expires: date(milliseconds: row["expires_ms"]),
            trusted: row["trusted"],
            challenges: try ACMEJSON.decode([ACMEChallenge].self, from: row["challenges"])
        )
    }

    private static func order(from row: Row) throws -> ACMEOrder {
        guard let status = OrderStatus(rawValue: row["status"]) else {
            throw LedgerError.corrupt("order \(String(describing: row["id"]))")
        }
        var order = ACMEOrder(
            id: row["id"], accountID: row["account_id"], status: status,
            identifiers: try ACMEJSON.decode([ACMEIdentifier].self, from: row["identifiers"]),
            authorizationIDs: try JSONList.decode(row["authorizations"]),
            notBefore: (row["not_before_ms"] as Int64?).map(date(milliseconds:)),
            notAfter: (row["not_after_ms"] as Int64?).map(date(milliseconds:)),
            profile: row["profile"], replaces: row["replaces"], expires: date(milliseconds: row["expires_ms"]),
            createdAt: date(milliseconds: row["created_at_ms"])
        )
        order.certificateSerial = row["certificate_serial"]
        order.error = try (row["error"] as String?).map { try ACMEJSON.decode(ACMEStoredProblem.self, from: $0) }
        return order
    }

    // MARK: Renewal information

    public func advanceRenewal(serials: [String], at date: Date) async throws -> Int {
        try await pool.write { db in
            var count = 0
            for serial in serials {
                guard
                    try Bool.fetchOne(
                        try db.cachedStatement(sql: "SELECT 1 FROM certificates WHERE serial = ?"),
                        arguments: [serial.lowercased()]) == true
                else { continue }
                try db.execute(
                    sql:
                        "INSERT INTO acme_renewal_advances (serial, advanced_at_ms) VALUES (?, ?) ON CONFLICT (serial) DO UPDATE SET advanced_at_ms = excluded.advanced_at_ms",
                    arguments: [serial.lowercased(), Self.milliseconds(date)])
                count += 1
            }
            try Self.insert(
                AuditEvent(
                    at: date, actor: "cli", action: "acme.renewal-info.advance", outcome: .success,
                    names: serials.map { $0.lowercased() }), into: db)
            return count
        }
    }

    public func renewalAdvancedAt(serial: String) async throws -> Date? {
        try await pool.read { db in
            try Int64.fetchOne(
                try db.cachedStatement(sql: "SELECT advanced_at_ms FROM acme_renewal_advances WHERE serial = ?"),
                arguments: [serial.lowercased()]
            )
            .map(Self.date(milliseconds:))
        }
    }

    public func pruneACME(now: Date = Date(), retention: Duration = .seconds(86_400)) async throws -> Int {
        let cutoff = Self.milliseconds(now) - Int64(retention.components.seconds) * 1000
        return try await pool.write { db in
            var removed = 0
            try db.execute(sql: "DELETE FROM acme_nonces WHERE expires_ms <= ?", arguments: [Self.milliseconds(now)])
            removed += db.changesCount
            try db.execute(
                sql: "DELETE FROM acme_orders WHERE expires_ms <= ? AND status != 'valid'", arguments: [cutoff])
            removed += db.changesCount
            try db.execute(
                sql: """
                    DELETE FROM acme_authorizations WHERE expires_ms <= ?
                    AND NOT EXISTS (SELECT 1 FROM acme_orders o, json_each(o.authorizations) j WHERE j.value = acme_authorizations.id)
                    """, arguments: [cutoff])
            removed += db.changesCount
            return removed
        }
    }

    static func date(milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }
}
