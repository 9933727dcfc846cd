import Crypto
import PostgresNIO
import SignetACME
import SignetAuthority
import SignetLedger
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension PostgresLedger: ACMEStore {
    // MARK: Nonces

    /// Stamped by the nonce key every replica shares (`ACMENonce`): issuing one writes nothing.
    public func issueNonce(now: Date) async throws -> String {
        ACMENonce.make(key: try await nonceKey(), nowMilliseconds: Self.milliseconds(now))
    }

    /// Accepted once, whichever replica handed it out: the spent set's primary key refuses a second use.
    public func consumeNonce(_ value: String, now: Date) async throws -> Bool {
        guard
            let expires = ACMENonce.expiry(
                of: value, key: try await nonceKey(), nowMilliseconds: Self.milliseconds(now))
        else { return false }
        return try await transaction { [self] connection in
            try await Self.exists(
                """
                INSERT INTO acme_nonces (value, expires_ms) VALUES (\(value), \(expires)) ON CONFLICT DO NOTHING
                RETURNING value
                """, on: connection)
        }
    }

    /// The nonce key: made by whichever replica first needs it; the others read that one.
    private func nonceKey() async throws -> SymmetricKey {
        if let key = nonceKeyCache.withLock({ $0 }) { return key }
        let fresh = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        let stored = try await transaction { [self] connection in
            try await connection.query(
                "INSERT INTO acme_settings (name, value) VALUES ('nonce-key', \(fresh)) ON CONFLICT DO NOTHING",
                logger: logger)
            return try await connection.allRows("SELECT value FROM acme_settings WHERE name = 'nonce-key'")
                .first?.value("value", as: Data.self)
        }
        guard let stored else { throw LedgerError.corrupt("the ACME nonce key vanished") }
        let key = SymmetricKey(data: stored)
        nonceKeyCache.withLock { $0 = key }
        return key
    }

    // MARK: External account keys

    public func createExternalKey(_ externalKey: ACMEExternalKey, macKey: [UInt8], actor: String) async throws {
        guard let key else { throw LedgerError.corrupt("EAB keys need the ledger key to be sealed") }
        let sealed = try key.seal(Base64URL.encode(macKey), binding: "acme-eab:" + externalKey.keyID)
        try await transaction { [self] connection in
            try await connection.query(
                """
                INSERT INTO acme_eab_keys (key_id, directory, label, allowed_names, sealed_mac_key, created_at_ms)
                VALUES (\(externalKey.keyID), \(externalKey.directory), \(externalKey.label),
                    \(externalKey.allowedNames), \(sealed), \(Self.milliseconds(externalKey.createdAt)))
                """, logger: logger)
            try await Self.insert(
                AuditEvent(
                    at: externalKey.createdAt, actor: actor, action: "acme.eab.create", outcome: .success,
                    subject: externalKey.keyID, names: externalKey.allowedNames,
                    reason: "directory \(externalKey.directory), label \(externalKey.label)"),
                on: connection, logger: logger)
        }
    }

    public func externalKeys(directory: String?) async throws -> [ACMEExternalKey] {
        try await rows(
            """
            SELECT * FROM acme_eab_keys WHERE \(directory)::text IS NULL OR directory = \(directory)
            ORDER BY created_at_ms
            """, Self.externalKey(from:))
    }

    public func externalKey(id: String) async throws -> (key: ACMEExternalKey, macKey: [UInt8])? {
        let found = try await rows("SELECT * FROM acme_eab_keys WHERE key_id = \(id)") { row in
            (try Self.externalKey(from: row), try row.value("sealed_mac_key", as: String.self))
        }
        guard let (externalKey, sealed) = found.first else { return nil }
        guard let key else { throw LedgerError.corrupt("EAB keys need the ledger key to be opened") }
        guard let mac = Base64URL.decode(try key.open(sealed, binding: "acme-eab:" + id)) else {
            throw LedgerError.corrupt("EAB key \(id) does not open to base64url")
        }
        return (externalKey, Array(mac))
    }

    public func revokeExternalKey(id: String, at date: Date, actor: String) async throws -> Bool {
        try await transaction { [self] connection in
            guard
                try await Self.exists(
                    """
                    UPDATE acme_eab_keys SET revoked_at_ms = \(Self.milliseconds(date))
                    WHERE key_id = \(id) AND revoked_at_ms IS NULL RETURNING key_id
                    """, on: connection)
            else { return false }
            try await Self.insert(
                AuditEvent(at: date, actor: actor, action: "acme.eab.revoke", outcome: .success, subject: id),
                on: connection, logger: logger)
            return true
        }
    }

    private static func externalKey(from row: PostgresRandomAccessRow) throws -> ACMEExternalKey {
        ACMEExternalKey(
            keyID: try row.value("key_id"), directory: try row.value("directory"), label: try row.value("label"),
            allowedNames: try row.value("allowed_names"),
            createdAt: date(milliseconds: try row.value("created_at_ms")),
            revokedAt: try row.value("revoked_at_ms", as: Int64?.self).map(date(milliseconds:)))
    }

    // MARK: Accounts

    private static let accountColumns = """
        a.*, k.label AS eab_label, k.allowed_names AS eab_allowed_names, k.revoked_at_ms AS eab_revoked_at_ms
        FROM acme_accounts a LEFT JOIN acme_eab_keys k ON k.key_id = a.eab_key_id
        """

    private static func accountQuery(_ condition: String) -> PostgresQuery {
        PostgresQuery(unsafeSQL: "SELECT \(accountColumns) WHERE \(condition)")
    }

    /// The account and its audit event; a key already registered in the directory (by any replica) returns that
    /// account instead, the unique key deciding races.
    public func createAccount(_ account: ACMEAccount) async throws -> (account: ACMEAccount, created: Bool) {
        do {
            return try await transaction { [self] connection in
                try await connection.query(
                    """
                    INSERT INTO acme_accounts (id, directory, thumbprint, jwk, status, contact, eab_key_id,
                        created_at_ms)
                    VALUES (\(account.id), \(account.directory), \(account.thumbprint), \(account.jwk),
                        \(account.status.rawValue), \(account.contact), \(account.externalKeyID),
                        \(Self.milliseconds(account.createdAt)))
                    """, logger: logger)
                try await Self.insert(
                    AuditEvent(
                        at: account.createdAt, actor: "acme:\(account.directory)/\(account.id)",
                        action: "acme.account.create", outcome: .success, subject: account.id,
                        reason: account.externalKeyID.map { "bound to EAB key \($0)" }),
                    on: connection, logger: logger)
                guard
                    let created = try await Self.account(
                        on: connection, Self.accountQuery("a.id = $1"), binding: account.id)
                else { throw LedgerError.corrupt("account \(account.id) vanished") }
                return (created, true)
            }
        } catch let error where Self.isUniqueViolation(error) {
            guard let existing = try await self.account(directory: account.directory, thumbprint: account.thumbprint)
            else { throw error }
            return (existing, false)
        }
    }

    public func account(id: String) async throws -> ACMEAccount? {
        try await accounts(Self.accountQuery("a.id = $1"), [id]).first
    }

    public func account(directory: String, thumbprint: String) async throws -> ACMEAccount? {
        try await accounts(Self.accountQuery("a.directory = $1 AND a.thumbprint = $2"), [directory, thumbprint]).first
    }

    public func accounts(directory: String?) async throws -> [ACMEAccount] {
        try await accounts(
            Self.accountQuery("$1::text IS NULL OR a.directory = $1 ORDER BY a.created_at_ms"), [directory])
    }

    public func updateAccount(id: String, contact: [String]?, status: AccountStatus?) async throws -> ACMEAccount? {
        try await transaction { [self] connection in
            if let contact {
                try await connection.query(
                    "UPDATE acme_accounts SET contact = \(contact) WHERE id = \(id) AND status = 'valid'",
                    logger: logger)
            }
            if let status,
                try await Self.exists(
                    """
                    UPDATE acme_accounts SET status = \(status.rawValue) WHERE id = \(id) AND status = 'valid'
                    RETURNING id
                    """, on: connection)
            {
                // A deactivated account's pending authorizations can never complete (§7.3.6).
                try await connection.query(
                    """
                    UPDATE acme_authorizations SET status = 'deactivated'
                    WHERE account_id = \(id) AND status IN ('pending', 'valid')
                    """, logger: logger)
                try await Self.insert(
                    AuditEvent(
                        at: Date(), actor: "acme:\(id)", action: "acme.account.\(status.rawValue)", outcome: .success,
                        subject: id),
                    on: connection, logger: logger)
            }
            return try await Self.account(on: connection, Self.accountQuery("a.id = $1"), binding: id)
        }
    }

    public func changeAccountKey(id: String, jwk: String, thumbprint: String) async throws -> String? {
        do {
            return try await transaction { [self] connection in
                if let other = try await connection.allRows(
                    """
                    SELECT b.id FROM acme_accounts a JOIN acme_accounts b
                        ON b.directory = a.directory AND b.thumbprint = \(thumbprint)
                    WHERE a.id = \(id)
                    """
                ).first {
                    return try other.value("id", as: String.self)
                }
                try await connection.query(
                    """
                    UPDATE acme_accounts SET jwk = \(jwk), thumbprint = \(thumbprint)
                    WHERE id = \(id) AND status = 'valid'
                    """, logger: logger)
                try await Self.insert(
                    AuditEvent(
                        at: Date(), actor: "acme:\(id)", action: "acme.account.key-change", outcome: .success,
                        subject: id, reason: "new key \(thumbprint)"),
                    on: connection, logger: logger)
                return nil
            }
        } catch let error where Self.isUniqueViolation(error) {
            // Another replica gave that key to an account between the check and the update.
            guard let account = try await self.account(id: id),
                let other = try await self.account(directory: account.directory, thumbprint: thumbprint)
            else { throw error }
            return other.id
        }
    }

    private func accounts(_ query: PostgresQuery, _ values: [String?]) async throws -> [ACMEAccount] {
        var bound = query
        for value in values { bound.binds.append(value) }
        return try await rows(bound, Self.account(from:))
    }

    private static func account(on connection: PostgresConnection, _ query: PostgresQuery, binding value: String)
        async throws -> ACMEAccount?
    {
        var bound = query
        bound.binds.append(value)
        return try await connection.allRows(bound).first.map(account(from:))
    }

    private static func account(from row: PostgresRandomAccessRow) throws -> ACMEAccount {
        let id = try row.value("id", as: String.self)
        guard let status = AccountStatus(rawValue: try row.value("status")) else {
            throw LedgerError.corrupt("account \(id): its status")
        }
        var account = ACMEAccount(
            id: id, directory: try row.value("directory"), thumbprint: try row.value("thumbprint"),
            jwk: try row.value("jwk"), status: status, contact: try row.value("contact"),
            externalKeyID: try row.value("eab_key_id"), createdAt: date(milliseconds: try row.value("created_at_ms")))
        account.label = try row.value("eab_label")
        account.allowedNames = try row.value("eab_allowed_names", as: [String]?.self) ?? []
        account.externalKeyRevoked = try row.value("eab_revoked_at_ms", as: Int64?.self) != nil
        return account
    }

    // MARK: Orders and authorizations

    public func reusableAuthorization(accountID: String, identifier: ACMEIdentifier, wildcard: Bool, now: Date)
        async throws -> ACMEAuthorization?
    {
        try await rows(
            """
            SELECT * FROM acme_authorizations
            WHERE account_id = \(accountID) AND identifier_value = \(identifier.value) AND status = 'valid'
                AND expires_ms > \(Self.milliseconds(now) + 3_600_000) AND identifier_type = \(identifier.type.rawValue)
                AND wildcard = \(wildcard)
            ORDER BY expires_ms DESC LIMIT 1
            """, Self.authorization(from:)
        ).first
    }

    public func createOrder(_ order: ACMEOrder, authorizations: [ACMEAuthorization], events: [AuditEvent]) async throws
    {
        let identifiers = try ACMEJSON.encode(order.identifiers)
        let rows = try authorizations.map { ($0, try ACMEJSON.encode($0.challenges)) }
        try await transaction { [self] connection in
            for (authorization, challenges) in rows {
                try await connection.query(
                    """
                    INSERT INTO acme_authorizations (id, account_id, identifier_type, identifier_value, wildcard,
                        status, expires_ms, trusted, challenges)
                    VALUES (\(authorization.id), \(authorization.accountID), \(authorization.identifier.type.rawValue),
                        \(authorization.identifier.value), \(authorization.wildcard), \(authorization.status.rawValue),
                        \(Self.milliseconds(authorization.expires)), \(authorization.trusted), \(challenges)::jsonb)
                    """, logger: logger)
            }
            try await connection.query(
                """
                INSERT INTO acme_orders (id, account_id, status, identifiers, authorizations, not_before_ms,
                    not_after_ms, profile, replaces, expires_ms, created_at_ms)
                VALUES (\(order.id), \(order.accountID), \(order.status.rawValue), \(identifiers)::jsonb,
                    \(order.authorizationIDs), \(order.notBefore.map(Self.milliseconds)),
                    \(order.notAfter.map(Self.milliseconds)), \(order.profile), \(order.replaces),
                    \(Self.milliseconds(order.expires)), \(Self.milliseconds(order.createdAt)))
                """, logger: logger)
            for event in events { try await Self.insert(event, on: connection, logger: logger) }
        }
    }

    public func order(id: String) async throws -> ACMEOrder? {
        try await rows("SELECT * FROM acme_orders WHERE id = \(id)", Self.order(from:)).first
    }

    public func orders(accountID: String, limit: Int) async throws -> [String] {
        try await rows(
            """
            SELECT id FROM acme_orders WHERE account_id = \(accountID) ORDER BY created_at_ms DESC
            LIMIT \(Int64(limit))
            """
        ) { try $0.value("id") }
    }

    /// In the order of `ids`; unknown ids are left out.
    public func authorizations(ids: [String]) async throws -> [ACMEAuthorization] {
        guard !ids.isEmpty else { return [] }
        return try await rows(
            "SELECT * FROM acme_authorizations WHERE id = ANY(\(ids))", Self.authorization(from:)
        ).ordered(as: ids)
    }

    public func updateAuthorization(_ authorization: ACMEAuthorization, expected: AuthorizationStatus) async throws
        -> Bool
    {
        let challenges = try ACMEJSON.encode(authorization.challenges)
        return try await transaction { [self] connection in
            try await Self.exists(
                """
                UPDATE acme_authorizations SET status = \(authorization.status.rawValue),
                    challenges = \(challenges)::jsonb, expires_ms = \(Self.milliseconds(authorization.expires))
                WHERE id = \(authorization.id) AND status = \(expected.rawValue)
                RETURNING id
                """, on: connection)
        }
    }

    public func challengesInProgress() async throws -> [ACMEAuthorization] {
        try await rows(
            """
            SELECT * FROM acme_authorizations
            WHERE status = 'pending' AND challenges @> '[{"status": "processing"}]'::jsonb
            """, Self.authorization(from:))
    }

    public func beginFinalization(orderID: String) async throws -> Bool {
        try await transaction { [self] connection in
            try await Self.exists(
                """
                UPDATE acme_orders SET status = 'processing' WHERE id = \(orderID) AND status IN ('pending', 'ready')
                RETURNING id
                """, on: connection)
        }
    }

    /// A front end's write inside the issuance's transaction (`record(_:event:alongside:)`).
    static func apply(_ write: LedgerWrite, on connection: PostgresConnection) async throws {
        switch write {
        case let .completeOrder(orderID, serial):
            guard
                try await exists(
                    """
                    UPDATE acme_orders SET status = 'valid', certificate_serial = \(serial)
                    WHERE id = \(orderID) AND status = 'processing' RETURNING id
                    """, on: connection)
            else {
                throw LedgerError.corrupt("order \(orderID) was not processing when its certificate was recorded")
            }
        }
    }

    public func failOrder(orderID: String, error: ACMEStoredProblem?, invalid: Bool) async throws {
        let problem = try error.map(ACMEJSON.encode)
        try await transaction { [self] connection in
            _ = try await connection.query(
                """
                UPDATE acme_orders SET status = \(invalid ? "invalid" : "ready"), error = \(problem)::jsonb
                WHERE id = \(orderID) AND status = 'processing'
                """, logger: logger)
        }
    }

    public func replacingOrders(certificateID: String) async throws -> [String] {
        try await rows(
            """
            SELECT id FROM acme_orders
            WHERE replaces = \(certificateID) AND status <> 'invalid' AND expires_ms > \(Self.milliseconds(Date()))
            """
        ) { try $0.value("id") }
    }

    private static func authorization(from row: PostgresRandomAccessRow) throws -> ACMEAuthorization {
        let id = try row.value("id", as: String.self)
        guard let type = ACMEIdentifier.Kind(rawValue: try row.value("identifier_type")),
            let status = AuthorizationStatus(rawValue: try row.value("status"))
        else {
            throw LedgerError.corrupt("authorization \(id)")
        }
        return ACMEAuthorization(
            id: id, accountID: try row.value("account_id"),
            identifier: ACMEIdentifier(type: type, value: try row.value("identifier_value")),
            wildcard: try row.value("wildcard"), status: status,
            expires: date(milliseconds: try row.value("expires_ms")), trusted: try row.value("trusted"),
            challenges: try ACMEJSON.decode([ACMEChallenge].self, from: try row.value("challenges")))
    }

    private static func order(from row: PostgresRandomAccessRow) throws -> ACMEOrder {
        let id = try row.value("id", as: String.self)
        guard let status = OrderStatus(rawValue: try row.value("status")) else {
            throw LedgerError.corrupt("order \(id)")
        }
        var order = ACMEOrder(
            id: id, accountID: try row.value("account_id"), status: status,
            identifiers: try ACMEJSON.decode([ACMEIdentifier].self, from: try row.value("identifiers")),
            authorizationIDs: try row.value("authorizations"),
            notBefore: try row.value("not_before_ms", as: Int64?.self).map(date(milliseconds:)),
            notAfter: try row.value("not_after_ms", as: Int64?.self).map(date(milliseconds:)),
            profile: try row.value("profile"), replaces: try row.value("replaces"),
            expires: date(milliseconds: try row.value("expires_ms")),
            createdAt: date(milliseconds: try row.value("created_at_ms")))
        order.certificateSerial = try row.value("certificate_serial")
        order.error = try row.value("error", as: String?.self).map {
            try ACMEJSON.decode(ACMEStoredProblem.self, from: $0)
        }
        return order
    }

    // MARK: Renewal information

    public func advanceRenewal(serials: [String], at date: Date) async throws -> Int {
        let lowered = serials.map { $0.lowercased() }
        return try await transaction { [self] connection in
            let advanced = try await connection.allRows(
                """
                INSERT INTO acme_renewal_advances (serial, advanced_at_ms)
                SELECT serial, \(Self.milliseconds(date)) FROM certificates WHERE serial = ANY(\(lowered))
                ON CONFLICT (serial) DO UPDATE SET advanced_at_ms = excluded.advanced_at_ms
                RETURNING serial
                """)
            try await Self.insert(
                AuditEvent(
                    at: date, actor: "cli", action: "acme.renewal-info.advance", outcome: .success, names: lowered),
                on: connection, logger: logger)
            return advanced.count
        }
    }

    public func renewalAdvancedAt(serial: String) async throws -> Date? {
        try await rows(
            "SELECT advanced_at_ms FROM acme_renewal_advances WHERE serial = \(serial.lowercased())"
        ) { Self.date(milliseconds: try $0.value("advanced_at_ms")) }.first
    }

    public func pruneACME(now: Date, retention: Duration) async throws -> Int {
        let cutoff = Self.milliseconds(now) - Int64(retention.components.seconds) * 1000
        return try await transaction { [self] connection in
            var removed = 0
            removed += try await connection.allRows(
                "DELETE FROM acme_nonces WHERE expires_ms <= \(Self.milliseconds(now)) RETURNING 1"
            ).count
            removed += try await connection.allRows(
                "DELETE FROM acme_orders WHERE expires_ms <= \(cutoff) AND status <> 'valid' RETURNING 1"
            ).count
            removed += try await connection.allRows(
                """
                DELETE FROM acme_authorizations z WHERE expires_ms <= \(cutoff)
                    AND NOT EXISTS (SELECT 1 FROM acme_orders o WHERE o.authorizations @> ARRAY[z.id])
                RETURNING 1
                """
            ).count
            return removed
        }
    }
}
