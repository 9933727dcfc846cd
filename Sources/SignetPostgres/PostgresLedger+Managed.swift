import PostgresNIO
import SignetAuthority
import SignetLedger
import SignetManaged

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension PostgresLedger: ManagedCertificateStore {
    public func createManagedCertificate(_ record: ManagedCertificateRecord, event: AuditEvent) async throws {
        let spec = try ManagedCertificateRecord.encode(record.spec)
        try await transaction { [self] connection in
            // The name's key and the target's unique index decide races; these reads name the holder in the error.
            if try await Self.exists("SELECT 1 FROM managed_certificates WHERE name = \(record.name)", on: connection) {
                throw LedgerError.managedCertificateExists(record.name)
            }
            try await Self.ensureTargetFree(record.spec.target, for: record.name, on: connection)
            try await Self.writingTarget(record.spec.target, name: record.name) {
                try await connection.query(
                    """
                    INSERT INTO managed_certificates (name, owner, spec, generation, created_ms, updated_ms,
                        next_attempt_ms)
                    VALUES (\(record.name), \(record.owner), \(spec)::jsonb, \(record.generation),
                        \(Self.milliseconds(record.createdAt)), \(Self.milliseconds(record.updatedAt)),
                        \(Self.milliseconds(record.nextAttemptAt)))
                    """, logger: logger)
            }
            try await Self.insert(event, on: connection, logger: logger)
        }
    }

    public func managedCertificate(name: String) async throws -> ManagedCertificateRecord? {
        try await rows("SELECT * FROM managed_certificates WHERE name = \(name)", managed(from:)).first
    }

    public func managedCertificates(after cursor: String?, limit: Int) async throws -> [ManagedCertificateRecord] {
        try await rows(
            """
            SELECT * FROM managed_certificates WHERE name > \(cursor ?? "") ORDER BY name COLLATE "C"
            LIMIT \(Int64(min(limit, Int(Int32.max))))
            """, managed(from:))
    }

    public func managedCertificates(cluster: String, namespace: String, secretName: String?) async throws
        -> [ManagedCertificateRecord]
    {
        try await rows(
            """
            SELECT * FROM managed_certificates WHERE target_cluster = \(cluster) AND target_namespace = \(namespace)
                AND (\(secretName)::text IS NULL OR target_secret = \(secretName))
            ORDER BY name
            """, managed(from:))
    }

    public func managedTargetNamespaces() async throws -> [(cluster: String, namespace: String)] {
        try await rows(
            "SELECT DISTINCT target_cluster, target_namespace FROM managed_certificates ORDER BY 1, 2"
        ) { row in
            (cluster: try row.value("target_cluster", as: String.self), namespace: try row.value("target_namespace"))
        }
    }

    /// `FOR UPDATE SKIP LOCKED`: replicas claiming at the same moment each take other rows and never wait on each
    /// other; a row whose claim has lapsed (its replica died) is claimable again.
    public func claimDueManagedCertificates(at now: Date, until: Date, limit: Int) async throws
        -> [ManagedCertificateRecord]
    {
        let nowMilliseconds = Self.milliseconds(now)
        return try await transaction { [self] connection in
            try await connection.allRows(
                """
                UPDATE managed_certificates m SET claimed_until_ms = \(Self.milliseconds(until))
                FROM (
                    SELECT name FROM managed_certificates
                    WHERE next_attempt_ms <= \(nowMilliseconds)
                        AND (claimed_until_ms IS NULL OR claimed_until_ms <= \(nowMilliseconds))
                    ORDER BY next_attempt_ms LIMIT \(Int64(limit))
                    FOR UPDATE SKIP LOCKED
                ) due
                WHERE m.name = due.name
                RETURNING m.*
                """
            ).map(managed(from:)).sorted { $0.nextAttemptAt < $1.nextAttemptAt }
        }
    }

    public func extendClaim(name: String, until: Date) async throws {
        try await transaction { [self] connection in
            _ = try await connection.query(
                """
                UPDATE managed_certificates SET claimed_until_ms = \(Self.milliseconds(until))
                WHERE name = \(name) AND claimed_until_ms IS NOT NULL
                """, logger: logger)
        }
    }

    public func updateManagedCertificate(name: String, spec: ManagedCertificateSpec, at now: Date, event: AuditEvent)
        async throws -> ManagedCertificateRecord
    {
        let encoded = try ManagedCertificateRecord.encode(spec)
        return try await transaction { [self] connection in
            try await Self.ensureTargetFree(spec.target, for: name, on: connection)
            var updated: ManagedCertificateRecord?
            try await Self.writingTarget(spec.target, name: name) {
                updated = try await connection.allRows(
                    """
                    UPDATE managed_certificates SET spec = \(encoded)::jsonb, generation = generation + 1,
                        updated_ms = \(Self.milliseconds(now)), next_attempt_ms = \(Self.milliseconds(now)), attempts = 0,
                        last_error = NULL, last_error_reason = NULL
                    WHERE name = \(name) RETURNING *
                    """
                ).first.map(managed(from:))
            }
            guard let updated else { throw LedgerError.noSuchManagedCertificate(name) }
            try await Self.insert(event, on: connection, logger: logger)
            return updated
        }
    }

    public func deleteManagedCertificate(name: String, event: AuditEvent) async throws {
        try await transaction { [self] connection in
            guard
                try await Self.exists(
                    "DELETE FROM managed_certificates WHERE name = \(name) RETURNING name", on: connection)
            else { throw LedgerError.noSuchManagedCertificate(name) }
            try await Self.insert(event, on: connection, logger: logger)
        }
    }

    public func scheduleManagedCertificate(name: String, at date: Date, event: AuditEvent) async throws {
        try await transaction { [self] connection in
            guard
                try await Self.exists(
                    """
                    UPDATE managed_certificates SET next_attempt_ms = \(Self.milliseconds(date)) WHERE name = \(name)
                    RETURNING name
                    """, on: connection)
            else { throw LedgerError.noSuchManagedCertificate(name) }
            try await Self.insert(event, on: connection, logger: logger)
        }
    }

    /// Durably remembers the key of the renewal about to be signed, before it is signed, sealed with the ledger key.
    public func beginRenewal(name: String, key pending: ManagedCertificateRecord.PendingKey, at now: Date) async throws
    {
        guard let key else { throw LedgerKeyError.noKey }
        let sealed = try key.seal(pending.pem, binding: ManagedCertificateRecord.pendingKeyBinding(name))
        try await transaction { [self] connection in
            try await connection.query(
                """
                UPDATE managed_certificates SET pending_key = \(sealed), pending_key_sha256 = \(pending.publicKeySHA256),
                    pending_generation = \(pending.generation), last_attempt_ms = \(Self.milliseconds(now))
                WHERE name = \(name)
                """, logger: logger)
        }
    }

    /// The renewal is done: the pending key is forgotten and the next renewal scheduled, or made due at once if the
    /// spec changed while this one ran.
    public func completeRenewal(name: String, delivered: ManagedCertificateRecord.Delivered, event: AuditEvent)
        async throws
    {
        let renewal = Self.milliseconds(delivered.renewalTime)
        let deliveredAt = Self.milliseconds(delivered.deliveredAt)
        try await transaction { [self] connection in
            try await connection.query(
                """
                UPDATE managed_certificates SET serial = \(delivered.serial),
                    not_before = \(Self.seconds(delivered.notBefore)), not_after = \(Self.seconds(delivered.notAfter)),
                    renewal_ms = \(renewal), issued_generation = \(delivered.generation), delivered_ms = \(deliveredAt),
                    secret_resource_version = \(delivered.secretResourceVersion), attempts = 0, last_error = NULL,
                    last_error_reason = NULL, pending_key = NULL, pending_key_sha256 = NULL, pending_generation = NULL,
                    probe_ms = NULL, probe_serial = NULL, probe_error = NULL, claimed_until_ms = NULL,
                    next_attempt_ms = CASE WHEN generation = \(delivered.generation) THEN \(renewal) ELSE \(deliveredAt) END
                WHERE name = \(name)
                """, logger: logger)
            try await Self.insert(event, on: connection, logger: logger)
        }
    }

    /// A failed attempt: counted, explained, and retried at `retryAt`; the pending key is kept for the retry.
    public func failRenewal(
        name: String, error: String, reason: String?, at now: Date, retryAt: Date, event: AuditEvent?
    ) async throws {
        try await transaction { [self] connection in
            try await connection.query(
                """
                UPDATE managed_certificates SET attempts = attempts + 1, last_error = \(error),
                    last_error_reason = \(reason), last_attempt_ms = \(Self.milliseconds(now)),
                    next_attempt_ms = \(Self.milliseconds(retryAt)), claimed_until_ms = NULL
                WHERE name = \(name)
                """, logger: logger)
            if let event { try await Self.insert(event, on: connection, logger: logger) }
        }
    }

    public func recordProbe(name: String, deliveredSerial serial: String, probe: ManagedCertificateRecord.Probe)
        async throws
    {
        _ = try await transaction { [self] connection in
            try await connection.query(
                """
                UPDATE managed_certificates SET probe_ms = \(Self.milliseconds(probe.at)), probe_serial = \(probe.servedSerial),
                    probe_error = \(probe.error)
                WHERE name = \(name) AND serial = \(serial)
                """, logger: connection.logger)
        }
    }

    // MARK: Rows

    static func exists(_ query: PostgresQuery, on connection: PostgresConnection) async throws -> Bool {
        var found = false
        for try await _ in try await connection.query(query, logger: connection.logger) { found = true }
        return found
    }

    /// One Secret, one managed certificate: says which one holds `target`, if another does.
    static func ensureTargetFree(_ target: DeliveryTarget, for name: String, on connection: PostgresConnection)
        async throws
    {
        let holders = try await connection.allRows(
            """
            SELECT name FROM managed_certificates WHERE target_cluster = \(target.cluster)
                AND target_namespace = \(target.namespace) AND target_secret = \(target.secretName) AND name <> \(name)
            """)
        if let holder = try holders.first?.value("name", as: String.self) {
            throw LedgerError.secretTaken(target: "\(target)", by: holder)
        }
    }

    /// A write that may lose the race for `target` to another replica: the unique index refuses it, said as such.
    static func writingTarget(_ target: DeliveryTarget, name: String, _ write: () async throws -> Void) async throws {
        do {
            try await write()
        } catch let error where isUniqueViolation(error) {
            let constraint = (error as? PSQLError)?.serverInfo?[.constraintName]
            if constraint == "managed_certificates_pkey" { throw LedgerError.managedCertificateExists(name) }
            throw LedgerError.secretTaken(target: "\(target)", by: "another managed certificate")
        }
    }

    func managed(from row: PostgresRandomAccessRow) throws -> ManagedCertificateRecord {
        let name = try row.value("name", as: String.self)
        let spec: ManagedCertificateSpec
        do {
            spec = try JSONDecoder().decode(
                ManagedCertificateSpec.self, from: Data(try row.value("spec", as: String.self).utf8))
        } catch {
            throw LedgerError.corrupt("managed certificate \(name): \(error)")
        }
        func date(_ column: String) throws -> Date? {
            try row.value(column, as: Int64?.self).map(Self.date(milliseconds:))
        }
        var record = ManagedCertificateRecord(
            name: name, owner: try row.value("owner"), spec: spec,
            createdAt: Self.date(milliseconds: try row.value("created_ms")))
        record.generation = try row.value("generation")
        record.updatedAt = Self.date(milliseconds: try row.value("updated_ms"))
        record.nextAttemptAt = Self.date(milliseconds: try row.value("next_attempt_ms"))
        record.attempts = Int(try row.value("attempts", as: Int64.self))
        record.lastError = try row.value("last_error")
        record.lastErrorReason = try row.value("last_error_reason")
        record.lastAttemptAt = try date("last_attempt_ms")
        if let serial = try row.value("serial", as: String?.self),
            let notBefore = try row.value("not_before", as: Int64?.self),
            let notAfter = try row.value("not_after", as: Int64?.self), let renewal = try date("renewal_ms"),
            let generation = try row.value("issued_generation", as: Int64?.self),
            let deliveredAt = try date("delivered_ms")
        {
            record.delivered = .init(
                serial: serial, notBefore: Self.date(seconds: notBefore), notAfter: Self.date(seconds: notAfter),
                renewalTime: renewal, generation: generation, deliveredAt: deliveredAt,
                secretResourceVersion: try row.value("secret_resource_version"))
        }
        if let stored = try row.value("pending_key", as: String?.self),
            let sha = try row.value("pending_key_sha256", as: String?.self),
            let generation = try row.value("pending_generation", as: Int64?.self)
        {
            guard let key else { throw LedgerKeyError.noKey }
            record.pendingKey = .init(
                pem: try key.open(stored, binding: ManagedCertificateRecord.pendingKeyBinding(name)),
                publicKeySHA256: sha,
                generation: generation)
        }
        if let at = try date("probe_ms") {
            record.probe = .init(
                at: at, servedSerial: try row.value("probe_serial"), error: try row.value("probe_error"))
        }
        return record
    }
}
