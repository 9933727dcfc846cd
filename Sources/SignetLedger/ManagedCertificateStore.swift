import GRDB
import SignetAuthority
import SignetManaged

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A managed certificate as the ledger keeps it: the spec, and the state of its renewals.
public struct ManagedCertificateRecord: Sendable, Equatable {
    /// The certificate currently in the target Secret.
    public struct Delivered: Sendable, Equatable {
        public var serial: String
        public var notBefore: Date
        public var notAfter: Date
        /// When the next renewal is due (jitter included).
        public var renewalTime: Date
        /// The spec generation it was issued for; behind `generation` means a change is waiting to be applied.
        public var generation: Int64
        public var deliveredAt: Date
        public var secretResourceVersion: String?

        public init(
            serial: String, notBefore: Date, notAfter: Date, renewalTime: Date, generation: Int64, deliveredAt: Date,
            secretResourceVersion: String?
        ) {
            self.serial = serial
            self.notBefore = notBefore
            self.notAfter = notAfter
            self.renewalTime = renewalTime
            self.generation = generation
            self.deliveredAt = deliveredAt
            self.secretResourceVersion = secretResourceVersion
        }
    }

    /// The key of a renewal in progress (see the v3 migration).
    public struct PendingKey: Sendable, Equatable {
        public var pem: String
        public var publicKeySHA256: String
        public var generation: Int64

        public init(pem: String, publicKeySHA256: String, generation: Int64) {
            self.pem = pem
            self.publicKeySHA256 = publicKeySHA256
            self.generation = generation
        }
    }

    /// What the gateway served when Signet last looked.
    public struct Probe: Sendable, Equatable {
        public var at: Date
        public var servedSerial: String?
        public var error: String?

        public init(at: Date, servedSerial: String?, error: String?) {
            self.at = at
            self.servedSerial = servedSerial
            self.error = error
        }
    }

    public var name: String
    /// Who registered it (`token:NAME`); kept for the audit trail.
    public var owner: String
    public var spec: ManagedCertificateSpec
    public var generation: Int64
    public var createdAt: Date
    public var updatedAt: Date
    public var nextAttemptAt: Date
    public var delivered: Delivered?
    /// Failed attempts since the last success.
    public var attempts: Int
    public var lastError: String?
    /// What kind of failure `lastError` is, when it is one the status names (`Unauthorized`).
    public var lastErrorReason: String?
    public var lastAttemptAt: Date?
    public var pendingKey: PendingKey?
    public var probe: Probe?

    public init(name: String, owner: String, spec: ManagedCertificateSpec, createdAt: Date) {
        self.name = name
        self.owner = owner
        self.spec = spec
        self.generation = 1
        self.createdAt = createdAt
        self.updatedAt = createdAt
        self.nextAttemptAt = createdAt
        self.attempts = 0
    }

    /// The ledger's requester for every certificate issued for this managed certificate.
    public static func requester(for name: String) -> String { "managed:\(name)" }

    /// The owner it writes into its Secret's `signet.dev/owner` annotation.
    public static func secretOwner(for name: String) -> String { "managed/\(name)" }

    /// The associated data a pending key is sealed with: the row it belongs to. Every backend seals with it, so a
    /// sealed key moves between backends as it is and cannot be moved to another row.
    public static func pendingKeyBinding(_ name: String) -> String { "managed_certificates/\(name)/pending_key" }

    /// The spec as every backend stores it: JSON with sorted keys.
    public static func encode(_ spec: ManagedCertificateSpec) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(spec), as: UTF8.self)
    }
}

extension CertificateLedger {
    public func createManagedCertificate(_ record: ManagedCertificateRecord, event: AuditEvent) async throws {
        let spec = try ManagedCertificateRecord.encode(record.spec)
        try await pool.write { db in
            guard
                try Row.fetchOne(db, sql: "SELECT 1 FROM managed_certificates WHERE name = ?", arguments: [record.name])
                    == nil
            else {
                throw LedgerError.managedCertificateExists(record.name)
            }
            try Self.ensureTargetFree(record.spec.target, for: record.name, in: db)
            try db.execute(
                sql: """
                    INSERT INTO managed_certificates (name, owner, spec, generation, created_ms, updated_ms, next_attempt_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    record.name, record.owner, spec, record.generation, Self.milliseconds(record.createdAt),
                    Self.milliseconds(record.updatedAt), Self.milliseconds(record.nextAttemptAt),
                ])
            try Self.insert(event, into: db)
        }
    }

    public func managedCertificate(name: String) async throws -> ManagedCertificateRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM managed_certificates WHERE name = ?", arguments: [name]).map {
                try self.managed(from: $0)
            }
        }
    }

    /// One page in name order, starting after `cursor` (the last name of the previous page).
    public func managedCertificates(after cursor: String? = nil, limit: Int = .max) async throws
        -> [ManagedCertificateRecord]
    {
        try await pool.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM managed_certificates WHERE name > ? ORDER BY name LIMIT ?",
                arguments: [cursor ?? "", limit]
            )
            .map { try self.managed(from: $0) }
        }
    }

    /// Those delivering into one Secret (normally one).
    public func managedCertificates(cluster: String, namespace: String, secretName: String? = nil) async throws
        -> [ManagedCertificateRecord]
    {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM managed_certificates WHERE \(ManagedTargetColumns.cluster) = ?
                        AND \(ManagedTargetColumns.namespace) = ? AND (? IS NULL OR \(ManagedTargetColumns.secretName) = ?)
                    """, arguments: [cluster, namespace, secretName, secretName]
            )
            .map { try self.managed(from: $0) }
        }
    }

    /// The (cluster, namespace) pairs that managed certificates deliver into.
    public func managedTargetNamespaces() async throws -> [(cluster: String, namespace: String)] {
        try await pool.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT DISTINCT json_extract(spec, '$.target.cluster') AS cluster, json_extract(spec, '$.target.namespace') AS namespace
                    FROM managed_certificates
                    """)
            return rows.map { (cluster: $0["cluster"] as String, namespace: $0["namespace"] as String) }
        }
    }

    /// Those whose next attempt is due, earliest first.
    public func claimDueManagedCertificates(at now: Date, until: Date, limit: Int) async throws
        -> [ManagedCertificateRecord]
    {
        try await pool.write { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM managed_certificates
                    WHERE next_attempt_ms <= ?1 AND (claimed_until_ms IS NULL OR claimed_until_ms <= ?1)
                    ORDER BY next_attempt_ms LIMIT ?2
                    """,
                arguments: [Self.milliseconds(now), limit]
            )
            for row in rows {
                try db.execute(
                    sql: "UPDATE managed_certificates SET claimed_until_ms = ? WHERE name = ?",
                    arguments: [Self.milliseconds(until), row["name"] as String])
            }
            return try rows.map { try self.managed(from: $0) }
        }
    }

    public func extendClaim(name: String, until: Date) async throws {
        try await pool.write { db in
            try db.execute(
                sql:
                    "UPDATE managed_certificates SET claimed_until_ms = ? WHERE name = ? AND claimed_until_ms IS NOT NULL",
                arguments: [Self.milliseconds(until), name])
        }
    }

    /// Replaces the spec, bumps the generation and makes a renewal due now, so the change reaches the Secret.
    public func updateManagedCertificate(name: String, spec: ManagedCertificateSpec, at now: Date, event: AuditEvent)
        async throws -> ManagedCertificateRecord
    {
        let encoded = try ManagedCertificateRecord.encode(spec)
        return try await pool.write { db in
            try Self.ensureTargetFree(spec.target, for: name, in: db)
            try db.execute(
                sql: """
                    UPDATE managed_certificates SET spec = ?, generation = generation + 1, updated_ms = ?, next_attempt_ms = ?,
                        attempts = 0, last_error = NULL, last_error_reason = NULL WHERE name = ?
                    """, arguments: [encoded, Self.milliseconds(now), Self.milliseconds(now), name])
            guard db.changesCount > 0 else { throw LedgerError.noSuchManagedCertificate(name) }
            try Self.insert(event, into: db)
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT * FROM managed_certificates WHERE name = ?", arguments: [name])
            else {
                throw LedgerError.noSuchManagedCertificate(name)
            }
            return try self.managed(from: row)
        }
    }

    public func deleteManagedCertificate(name: String, event: AuditEvent) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM managed_certificates WHERE name = ?", arguments: [name])
            guard db.changesCount > 0 else { throw LedgerError.noSuchManagedCertificate(name) }
            try Self.insert(event, into: db)
        }
    }

    /// Makes the next attempt due now (a forced renewal, or the Secret was found changed).
    public func scheduleManagedCertificate(name: String, at date: Date, event: AuditEvent) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE managed_certificates SET next_attempt_ms = ? WHERE name = ?",
                arguments: [Self.milliseconds(date), name])
            guard db.changesCount > 0 else { throw LedgerError.noSuchManagedCertificate(name) }
            try Self.insert(event, into: db)
        }
    }

    /// Durably remembers the key of the renewal about to be signed, before it is signed, sealed with the ledger key.
    public func beginRenewal(name: String, key pending: ManagedCertificateRecord.PendingKey, at now: Date) async throws
    {
        guard let key else { throw LedgerKeyError.noKey }
        let sealed = try key.seal(pending.pem, binding: ManagedCertificateRecord.pendingKeyBinding(name))
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE managed_certificates SET pending_key = ?, pending_key_sha256 = ?, pending_generation = ?, last_attempt_ms = ?
                    WHERE name = ?
                    """, arguments: [sealed, pending.publicKeySHA256, pending.generation, Self.milliseconds(now), name])
        }
    }

    private func openPendingKey(_ stored: String, name: String) throws -> String {
        guard LedgerKey.isSealed(stored) else { return stored }
        guard let key else { throw LedgerKeyError.noKey }
        return try key.open(stored, binding: ManagedCertificateRecord.pendingKeyBinding(name))
    }

    /// Pending keys written in plaintext by an older Signet are sealed (and, with `secure_delete`, their plaintext
    /// zeroed) when the ledger is opened with its key.
    func sealPlaintextPendingKeys() throws {
        guard let key else { return }
        try pool.write { db in
            let rows = try Row.fetchAll(
                db, sql: "SELECT name, pending_key FROM managed_certificates WHERE pending_key IS NOT NULL")
            for row in rows {
                let name: String = row["name"], stored: String = row["pending_key"]
                guard !LedgerKey.isSealed(stored) else { continue }
                try db.execute(
                    sql: "UPDATE managed_certificates SET pending_key = ? WHERE name = ?",
                    arguments: [try key.seal(stored, binding: ManagedCertificateRecord.pendingKeyBinding(name)), name])
            }
        }
    }

    /// The renewal is done: the Secret holds `delivered`. The pending key is forgotten and the next renewal is
    /// scheduled, or made due at once if the spec changed while this one ran.
    public func completeRenewal(name: String, delivered: ManagedCertificateRecord.Delivered, event: AuditEvent)
        async throws
    {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE managed_certificates SET serial = ?, not_before = ?, not_after = ?, renewal_ms = ?, issued_generation = ?,
                        delivered_ms = ?, secret_resource_version = ?, attempts = 0, last_error = NULL, last_error_reason = NULL,
                        pending_key = NULL, pending_key_sha256 = NULL, pending_generation = NULL,
                        probe_ms = NULL, probe_serial = NULL, probe_error = NULL, claimed_until_ms = NULL,
                        next_attempt_ms = CASE WHEN generation = ? THEN ? ELSE ? END
                    WHERE name = ?
                    """,
                arguments: [
                    delivered.serial, Int64(delivered.notBefore.timeIntervalSince1970),
                    Int64(delivered.notAfter.timeIntervalSince1970),
                    Self.milliseconds(delivered.renewalTime), delivered.generation,
                    Self.milliseconds(delivered.deliveredAt),
                    delivered.secretResourceVersion, delivered.generation, Self.milliseconds(delivered.renewalTime),
                    Self.milliseconds(delivered.deliveredAt), name,
                ])
            try Self.insert(event, into: db)
        }
    }

    /// A failed attempt: counted, explained, and retried at `retryAt`. The pending key is kept for the retry.
    public func failRenewal(
        name: String, error: String, reason: String? = nil, at now: Date, retryAt: Date, event: AuditEvent? = nil
    ) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE managed_certificates SET attempts = attempts + 1, last_error = ?, last_error_reason = ?, last_attempt_ms = ?, next_attempt_ms = ?,
                        claimed_until_ms = NULL
                    WHERE name = ?
                    """, arguments: [error, reason, Self.milliseconds(now), Self.milliseconds(retryAt), name])
            if let event { try Self.insert(event, into: db) }
        }
    }

    /// Records what the gateway served, if `serial` is still the delivered certificate.
    public func recordProbe(name: String, deliveredSerial serial: String, probe: ManagedCertificateRecord.Probe)
        async throws
    {
        try await pool.write { db in
            try db.execute(
                sql:
                    "UPDATE managed_certificates SET probe_ms = ?, probe_serial = ?, probe_error = ? WHERE name = ? AND serial = ?",
                arguments: [Self.milliseconds(probe.at), probe.servedSerial, probe.error, name, serial])
        }
    }

    /// The newest certificate issued to `requester` for this public key: how a renewal interrupted after signing
    /// finds the certificate it already has.
    public func certificate(requester: String, publicKeySHA256: String) async throws -> CertificateEntry? {
        try await pool.read { db in
            try Row.fetchOne(
                db,
                sql:
                    "SELECT * FROM certificates WHERE public_key_sha256 = ? AND requester = ? ORDER BY id DESC LIMIT 1",
                arguments: [publicKeySHA256, requester]
            )
            .map(Self.entry(from:))
        }
    }

    /// One Secret, one managed certificate: the unique index guarantees it, this says which one holds it.
    private static func ensureTargetFree(_ target: DeliveryTarget, for name: String, in db: Database) throws {
        let holder = try String.fetchOne(
            db,
            sql: """
                SELECT name FROM managed_certificates WHERE \(ManagedTargetColumns.cluster) = ? AND \(ManagedTargetColumns.namespace) = ?
                    AND \(ManagedTargetColumns.secretName) = ? AND name <> ?
                """, arguments: [target.cluster, target.namespace, target.secretName, name])
        if let holder { throw LedgerError.secretTaken(target: "\(target)", by: holder) }
    }

    private static func date(_ milliseconds: Int64?) -> Date? {
        milliseconds.map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    private func managed(from row: Row) throws -> ManagedCertificateRecord {
        let specText: String = row["spec"]
        let spec: ManagedCertificateSpec
        do {
            spec = try JSONDecoder().decode(ManagedCertificateSpec.self, from: Data(specText.utf8))
        } catch {
            throw LedgerError.corrupt("managed certificate \(row["name"] as String): \(error)")
        }
        var record = ManagedCertificateRecord(
            name: row["name"], owner: row["owner"], spec: spec, createdAt: Self.date(row["created_ms"])!)
        record.generation = row["generation"]
        record.updatedAt = Self.date(row["updated_ms"])!
        record.nextAttemptAt = Self.date(row["next_attempt_ms"])!
        record.attempts = row["attempts"]
        record.lastError = row["last_error"]
        record.lastErrorReason = row["last_error_reason"]
        record.lastAttemptAt = Self.date(row["last_attempt_ms"])
        if let serial: String = row["serial"], let notBefore: Int64 = row["not_before"],
            let notAfter: Int64 = row["not_after"],
            let renewal = Self.date(row["renewal_ms"]), let generation: Int64 = row["issued_generation"],
            let deliveredAt = Self.date(row["delivered_ms"])
        {
            record.delivered = .init(
                serial: serial, notBefore: Date(timeIntervalSince1970: TimeInterval(notBefore)),
                notAfter: Date(timeIntervalSince1970: TimeInterval(notAfter)),
                renewalTime: renewal, generation: generation, deliveredAt: deliveredAt,
                secretResourceVersion: row["secret_resource_version"]
            )
        }
        if let stored: String = row["pending_key"], let sha: String = row["pending_key_sha256"],
            let generation: Int64 = row["pending_generation"]
        {
            record.pendingKey = .init(
                pem: try openPendingKey(stored, name: record.name), publicKeySHA256: sha, generation: generation)
        }
        if let at = Self.date(row["probe_ms"]) {
            record.probe = .init(at: at, servedSerial: row["probe_serial"], error: row["probe_error"])
        }
        return record
    }
}
