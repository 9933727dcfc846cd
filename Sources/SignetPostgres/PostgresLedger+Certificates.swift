import Logging
import PostgresNIO
import SignetAuthority
import SignetLedger

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension PostgresLedger: IssuedCertificateStore, StoreHealth {
    /// The certificate, its names and its audit event, committed before this returns; concurrent issuances share a
    /// transaction (`committer`), and one that fails is retried alone so that it fails only its own caller.
    ///
    /// `issued_at` is kept non-decreasing in `id` order, as in the SQLite ledger, so that issue-time filters become
    /// `id` ranges; the transaction-scoped advisory lock the committer takes orders inserts from every replica by that
    /// rule.
    public func record(_ entry: CertificateEntry, event: AuditEvent, alongside: LedgerWrite?) async throws {
        do {
            try await committer.commit { [logger] connection in
                try await Self.insert(entry, event: event, alongside: alongside, on: connection, logger: logger)
            }
        } catch let error where Self.isUniqueViolation(error) {
            // The serial's unique key decides between replicas; the issuance service signs again with a new serial.
            throw LedgerError.serialTaken(entry.serial)
        }
    }

    /// The certificate and its names in one statement (a round trip fewer per issuance in a batch), then its event.
    private static func insert(
        _ entry: CertificateEntry, event: AuditEvent, alongside: LedgerWrite?, on connection: PostgresConnection,
        logger: Logger
    ) async throws {
        try await connection.query(
            """
            WITH inserted AS (
                INSERT INTO certificates (serial, issuer_key_id, subject, dns_names, ip_addresses, uris,
                    public_key_sha256, csr_sha256, profile, not_before, not_after, requester, issued_at, der,
                    signer_key_version, signer_request_id)
                VALUES (\(entry.serial), \(entry.issuerKeyID), \(entry.subject), \(entry.dnsNames), \(entry.ipAddresses),
                    \(entry.uris), \(entry.publicKeySHA256), \(entry.csrSHA256), \(entry.profile.rawValue),
                    \(seconds(entry.notBefore)), \(seconds(entry.notAfter)), \(entry.requester),
                    GREATEST(\(milliseconds(entry.issuedAt)), COALESCE((SELECT max(issued_at) FROM certificates), 0)),
                    \(Data(entry.der)), \(entry.signerKeyVersion), \(entry.signerRequestID))
                RETURNING id
            )
            INSERT INTO certificate_names (certificate_id, name)
            SELECT inserted.id, name
            FROM inserted, unnest(\(entry.dnsNames + entry.ipAddresses + entry.uris)::text[]) AS name
            ON CONFLICT DO NOTHING
            """, logger: logger)
        try await insert(event, on: connection, logger: logger)
        if let alongside { try await apply(alongside, on: connection) }
    }

    public func certificate(serial: String) async throws -> CertificateEntry? {
        try await rows("SELECT * FROM certificates WHERE serial = \(serial.lowercased())", Self.entry(from:)).first
    }

    public func certificate(requester: String, publicKeySHA256: String) async throws -> CertificateEntry? {
        try await rows(
            """
            SELECT * FROM certificates WHERE requester = \(requester) AND public_key_sha256 = \(publicKeySHA256.lowercased())
            ORDER BY id DESC LIMIT 1
            """, Self.entry(from:)
        ).first
    }

    public func certificates(matching query: CertificateQuery, now: Date) async throws -> CertificatePage {
        var clauses: [String] = []
        var binds = PostgresBindings()
        func bind(_ value: some PostgresDynamicTypeEncodable) -> String {
            binds.append(value)
            return "$\(binds.count)"
        }
        if let position = try query.cursorPosition() {
            clauses.append("id < \(bind(position))")
        }
        if let host = query.dnsName?.lowercased() {
            var names = [host]
            if let wildcard = HostnameRules.coveringWildcard(of: host) { names.append(wildcard) }
            clauses.append("id IN (SELECT certificate_id FROM certificate_names WHERE name = ANY(\(bind(names))))")
        }
        let nowSeconds = Self.seconds(now)
        switch query.status {
        case .valid: clauses.append("status = 'valid' AND not_after >= \(bind(nowSeconds))")
        case .expired: clauses.append("status = 'valid' AND not_after < \(bind(nowSeconds))")
        case .revoked: clauses.append("status = 'revoked'")
        case nil: break
        }
        if let date = query.expiringBefore { clauses.append("not_after < \(bind(Self.seconds(date)))") }
        // Issue times are non-decreasing in id order (see `record`), so each bound becomes an id bound found with
        // one index lookup, and the listing walks the primary key instead of filtering it row by row: a bound far
        // in the past no longer reads the whole table to fill a page.
        if let date = query.issuedAfter {
            let after = bind(Self.milliseconds(date))
            clauses.append(
                """
                id > COALESCE((SELECT id FROM certificates WHERE issued_at <= \(after) ORDER BY issued_at DESC, id DESC
                    LIMIT 1), 0) AND issued_at > \(after)
                """)
        }
        if let date = query.issuedBefore {
            clauses.append(
                """
                id <= (SELECT id FROM certificates WHERE issued_at < \(bind(Self.milliseconds(date)))
                    ORDER BY issued_at DESC, id DESC LIMIT 1)
                """)
        }
        if let requester = query.requester { clauses.append("requester = \(bind(requester))") }
        if let fingerprint = query.publicKeySHA256 {
            clauses.append("public_key_sha256 = \(bind(fingerprint.lowercased()))")
        }
        let limit = query.boundedLimit
        let whereClause = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        let found = try await rows(
            PostgresQuery(
                unsafeSQL: "SELECT * FROM certificates \(whereClause) ORDER BY id DESC LIMIT \(limit + 1)", binds: binds
            )
        ) { row in (id: try row.value("id", as: Int64.self), entry: try Self.entry(from: row)) }
        let page = found.prefix(limit)
        return CertificatePage(
            entries: page.map(\.entry), nextCursor: found.count > limit ? page.last.map { String($0.id) } : nil)
    }

    /// Revokes a certificate: status, time and reason with its audit event, in one transaction that locks the row,
    /// so that two replicas revoking it at once record one revocation; a managed certificate whose current
    /// certificate it is becomes due for renewal at once.
    public func revoke(serial: String, reason: RevocationReason, at date: Date, actor: String) async throws
        -> RevocationOutcome
    {
        let serial = serial.lowercased()
        return try await transaction { [self] connection in
            guard
                let entry = try await connection.allRows(
                    "SELECT * FROM certificates WHERE serial = \(serial) FOR UPDATE"
                ).first.map(Self.entry(from:))
            else { return .unknown }
            if entry.storedStatus == .revoked { return .alreadyRevoked(entry) }
            if entry.notAfter <= date { return .expired(entry) }
            try await connection.query(
                """
                UPDATE certificates SET status = 'revoked', revoked_at = \(Self.seconds(date)),
                    revocation_reason = \(reason.name) WHERE serial = \(serial)
                """, logger: logger)
            try await Self.insert(
                AuditEvent(
                    at: date, actor: actor, action: "certificate.revoke", outcome: .success, subject: serial,
                    names: entry.dnsNames + entry.ipAddresses, reason: reason.name),
                on: connection, logger: logger)
            // A managed certificate whose current certificate this is renews at once, with a new key.
            let why = "the current certificate \(serial) was revoked (\(reason.name)); renewing with a new key"
            try await connection.query(
                """
                UPDATE managed_certificates SET next_attempt_ms = \(Self.milliseconds(date)), last_error = \(why),
                    last_error_reason = 'Revoked'
                WHERE serial = \(serial)
                """, logger: logger)
            var revoked = entry
            revoked.storedStatus = .revoked
            revoked.revokedAt = Self.date(seconds: Self.seconds(date))
            revoked.revocationReason = reason.name
            return .revoked(revoked)
        }
    }

    public func checkHealth() async throws {
        // A write, as SQLite's check is: a replica whose database is read-only (a standby) is not ready.
        _ = try await transaction { [self] connection in
            try await connection.query(
                "CREATE TEMPORARY TABLE signet_health (x int) ON COMMIT DROP", logger: connection.logger)
        }
    }

    public func summary(now: Date) async throws -> (counts: [CertificateStatus: Int], earliestExpiry: Date?) {
        let nowSeconds = Self.seconds(now)
        let found = try await rows(
            """
            SELECT count(*) FILTER (WHERE status = 'valid' AND not_after >= \(nowSeconds)) AS valid,
                count(*) FILTER (WHERE status = 'valid' AND not_after < \(nowSeconds)) AS expired,
                count(*) FILTER (WHERE status = 'revoked') AS revoked,
                min(not_after) FILTER (WHERE status = 'valid' AND not_after >= \(nowSeconds)) AS earliest
            FROM certificates
            """
        ) { row in
            (
                counts: [
                    CertificateStatus.valid: Int(try row.value("valid", as: Int64.self)),
                    .expired: Int(try row.value("expired", as: Int64.self)),
                    .revoked: Int(try row.value("revoked", as: Int64.self)),
                ],
                earliest: try row.value("earliest", as: Int64?.self).map(Self.date(seconds:))
            )
        }
        return (found.first?.counts ?? [.valid: 0, .expired: 0, .revoked: 0], found.first?.earliest)
    }

    static func entry(from row: PostgresRandomAccessRow) throws -> CertificateEntry {
        let profileText = try row.value("profile", as: String.self)
        guard let profile = CertificateProfile(rawValue: profileText) else {
            throw LedgerError.corrupt("unknown profile \(profileText)")
        }
        var entry = CertificateEntry(
            serial: try row.value("serial"), issuerKeyID: try row.value("issuer_key_id"),
            subject: try row.value("subject"), dnsNames: try row.value("dns_names"),
            ipAddresses: try row.value("ip_addresses"), publicKeySHA256: try row.value("public_key_sha256"),
            csrSHA256: try row.value("csr_sha256"), profile: profile,
            notBefore: date(seconds: try row.value("not_before")), notAfter: date(seconds: try row.value("not_after")),
            requester: try row.value("requester"), issuedAt: date(milliseconds: try row.value("issued_at")),
            der: Array(try row.value("der", as: Data.self))
        )
        entry.uris = try row.value("uris")
        entry.storedStatus = CertificateEntry.StoredStatus(rawValue: try row.value("status")) ?? .valid
        entry.revokedAt = try row.value("revoked_at", as: Int64?.self).map(date(seconds:))
        entry.revocationReason = try row.value("revocation_reason")
        entry.signerKeyVersion = try row.value("signer_key_version")
        entry.signerRequestID = try row.value("signer_request_id")
        return entry
    }
}
