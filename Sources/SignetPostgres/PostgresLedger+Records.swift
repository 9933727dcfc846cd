import Logging
import PostgresNIO
import SignetAuthority
import SignetLedger

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension PostgresLedger: TokenStore, AuditLog, RevocationListStore {
    // MARK: Tokens

    /// A token and its audit event; a name already taken (by any replica, revoked or not) is refused by the key.
    public func createToken(_ token: TokenEntry) async throws {
        do {
            try await transaction { [self] connection in
                try await connection.query(
                    """
                    INSERT INTO tokens (name, secret_sha256, allowed_names, allowed_profiles, max_lifetime_seconds,
                        created_at, allowed_targets, auditor, administrator)
                    VALUES (\(token.name), \(token.secretSHA256), \(token.allowedNames),
                        \(token.allowedProfiles.map(\.rawValue)), \(token.maximumLifetime.components.seconds),
                        \(Self.seconds(token.createdAt)), \(token.allowedTargets), \(token.auditor),
                        \(token.administrator))
                    """, logger: logger)
                try await Self.insert(
                    AuditEvent(
                        at: token.createdAt, actor: "cli", action: "token.create", outcome: .success,
                        subject: token.name, names: token.allowedNames),
                    on: connection, logger: logger)
            }
        } catch let error where Self.isUniqueViolation(error) {
            throw LedgerError.tokenExists(token.name)
        }
    }

    public func tokens() async throws -> [TokenEntry] {
        try await rows("SELECT * FROM tokens ORDER BY name", Self.token(from:))
    }

    public func token(name: String) async throws -> TokenEntry? {
        try await rows("SELECT * FROM tokens WHERE name = \(name)", Self.token(from:)).first
    }

    public func token(secretSHA256: String) async throws -> TokenEntry? {
        try await rows("SELECT * FROM tokens WHERE secret_sha256 = \(secretSHA256)", Self.token(from:)).first
    }

    /// Marks a token revoked; its row stays, so its name is never reused.
    public func revokeToken(name: String, at date: Date) async throws {
        let revoked = try await transaction { [self] connection in
            var changed = false
            for try await _ in try await connection.query(
                """
                UPDATE tokens SET revoked_at = \(Self.seconds(date)) WHERE name = \(name) AND revoked_at IS NULL
                RETURNING name
                """, logger: logger)
            {
                changed = true
            }
            if changed {
                try await Self.insert(
                    AuditEvent(at: date, actor: "cli", action: "token.revoke", outcome: .success, subject: name),
                    on: connection, logger: logger)
            }
            return changed
        }
        guard revoked else { throw LedgerError.noSuchToken(name) }
    }

    static func token(from row: PostgresRandomAccessRow) throws -> TokenEntry {
        TokenEntry(
            name: try row.value("name"), secretSHA256: try row.value("secret_sha256"),
            allowedNames: try row.value("allowed_names"),
            allowedProfiles: try row.value("allowed_profiles", as: [String].self)
                .compactMap(CertificateProfile.init(rawValue:)),
            maximumLifetime: .seconds(try row.value("max_lifetime_seconds", as: Int64.self)),
            createdAt: date(seconds: try row.value("created_at")),
            revokedAt: try row.value("revoked_at", as: Int64?.self).map(date(seconds:)),
            allowedTargets: try row.value("allowed_targets"),
            auditor: try row.value("auditor"), administrator: try row.value("administrator")
        )
    }

    // MARK: Audit events

    public func record(_ event: AuditEvent) async throws {
        try await committer.commit { [logger] connection in try await Self.insert(event, on: connection, logger: logger)
        }
    }

    public func auditEvents(limit: Int) async throws -> [AuditEvent] {
        try await rows("SELECT * FROM audit_events ORDER BY id DESC LIMIT \(Int64(limit))") { row in
            AuditEvent(
                at: Self.date(milliseconds: try row.value("at_ms")), actor: try row.value("actor"),
                action: try row.value("action"),
                outcome: AuditEvent.Outcome(rawValue: try row.value("outcome")) ?? .failed,
                subject: try row.value("subject"), names: try row.value("names", as: [String]?.self) ?? [],
                reason: try row.value("reason"))
        }
    }

    static func insert(_ event: AuditEvent, on connection: PostgresConnection, logger: Logger) async throws {
        let names: [String]? = event.names.isEmpty ? nil : event.names
        try await connection.query(
            """
            INSERT INTO audit_events (at_ms, actor, action, outcome, subject, names, reason)
            VALUES (\(milliseconds(event.at)), \(event.actor), \(event.action), \(event.outcome.rawValue),
                \(event.subject), \(names), \(event.reason))
            """, logger: logger)
    }

    // MARK: CRLs

    public func revokedCertificates(issuerKeyID: String, expiredAfter: Date) async throws -> [RevokedCertificate] {
        try await rows(
            """
            SELECT serial, revoked_at, revocation_reason FROM certificates
            WHERE status = 'revoked' AND issuer_key_id = \(issuerKeyID) AND not_after > \(Self.seconds(expiredAfter))
            ORDER BY revoked_at, serial
            """
        ) { row in
            RevokedCertificate(
                serial: try row.value("serial"), revokedAt: Self.date(seconds: try row.value("revoked_at")),
                reason: try row.value("revocation_reason", as: String?.self).flatMap(RevocationReason.init(name:))
                    ?? .unspecified)
        }
    }

    public func latestCRLNumber(issuerKeyID: String) async throws -> Int64? {
        try await rows("SELECT number FROM crls WHERE issuer_key_id = \(issuerKeyID)") {
            try $0.value("number", as: Int64.self)
        }.first
    }

    public func latestCRL(issuerKeyID: String) async throws -> StoredCRL? {
        try await rows("SELECT * FROM crls WHERE issuer_key_id = \(issuerKeyID)") { row in
            StoredCRL(
                issuerKeyID: try row.value("issuer_key_id"), number: try row.value("number"),
                thisUpdate: Self.date(milliseconds: try row.value("this_update_ms")),
                nextUpdate: Self.date(milliseconds: try row.value("next_update_ms")),
                entries: Int(try row.value("entries", as: Int64.self)), der: Array(try row.value("der", as: Data.self)))
        }.first
    }

    /// Keeps `crl` if its number is above the stored one, whichever replica stored that: the comparison is in the
    /// upsert itself, so two replicas publishing at once keep the higher number.
    public func storeCRL(_ crl: StoredCRL) async throws -> Bool {
        try await transaction { [self] connection in
            var kept = false
            for try await _ in try await connection.query(
                """
                INSERT INTO crls (issuer_key_id, number, this_update_ms, next_update_ms, entries, der)
                VALUES (\(crl.issuerKeyID), \(crl.number), \(Self.milliseconds(crl.thisUpdate)),
                    \(Self.milliseconds(crl.nextUpdate)), \(Int64(crl.entries)), \(Data(crl.der)))
                ON CONFLICT (issuer_key_id) DO UPDATE SET number = excluded.number,
                    this_update_ms = excluded.this_update_ms, next_update_ms = excluded.next_update_ms,
                    entries = excluded.entries, der = excluded.der
                WHERE excluded.number > crls.number
                RETURNING number
                """, logger: logger)
            {
                kept = true
            }
            return kept
        }
    }
}
