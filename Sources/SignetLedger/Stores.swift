import SignetAuthority

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// The narrow storage seams, one per consumer's need, as Boulder's services each hold a narrow storage client. The SQLite
// `CertificateLedger` implements them all; another database implements the same protocols and passes the same
// conformance suite (Tests/SignetTests/StoreConformanceTests.swift), and nothing above them changes.

/// Issued certificates: recorded with their audit event, read by serial, key or query, revoked.
public protocol IssuedCertificateStore: Sendable {
    /// Records a certificate, its audit event and `alongside` in one transaction; returns once it is durable.
    func record(_ entry: CertificateEntry, event: AuditEvent, alongside: LedgerWrite?) async throws
    func certificate(serial: String) async throws -> CertificateEntry?
    /// The newest certificate of `requester` for a public key (an interrupted issuance's).
    func certificate(requester: String, publicKeySHA256: String) async throws -> CertificateEntry?
    func certificates(matching query: CertificateQuery, now: Date) async throws -> CertificatePage
    /// Revokes once, recording the revocation's audit event in the same transaction.
    func revoke(serial: String, reason: RevocationReason, at date: Date, actor: String) async throws
        -> RevocationOutcome
}

/// What readiness and the metrics ask of the store: that it can be written, and how many certificates it holds.
public protocol StoreHealth: Sendable {
    /// Throws when the store cannot be written.
    func checkHealth() async throws
    func summary(now: Date) async throws -> (counts: [CertificateStatus: Int], earliestExpiry: Date?)
}

/// API tokens, stored by the digest of their secret.
public protocol TokenStore: Sendable {
    func createToken(_ token: TokenEntry) async throws
    func tokens() async throws -> [TokenEntry]
    func token(name: String) async throws -> TokenEntry?
    func token(secretSHA256: String) async throws -> TokenEntry?
    func revokeToken(name: String, at date: Date) async throws
}

/// The audit log: every decision, its actor and outcome.
public protocol AuditLog: Sendable {
    func record(_ event: AuditEvent) async throws
    func auditEvents(limit: Int) async throws -> [AuditEvent]
}

/// What a CRL is made from, and the latest CRL of each issuing key (its number never reused).
public protocol RevocationListStore: Sendable {
    func revokedCertificates(issuerKeyID: String, expiredAfter: Date) async throws -> [RevokedCertificate]
    func latestCRL(issuerKeyID: String) async throws -> StoredCRL?
    /// Keeps `crl` if its number is above the stored one; returns whether it was kept.
    func storeCRL(_ crl: StoredCRL) async throws -> Bool
}

extension IssuedCertificateStore {
    public func record(_ entry: CertificateEntry, event: AuditEvent) async throws {
        try await record(entry, event: event, alongside: nil)
    }

    public func certificates(matching query: CertificateQuery) async throws -> CertificatePage {
        try await certificates(matching: query, now: Date())
    }
}

extension AuditLog {
    public func auditEvents() async throws -> [AuditEvent] { try await auditEvents(limit: 100) }
}

extension CertificateLedger: IssuedCertificateStore, TokenStore, AuditLog, RevocationListStore, StoreHealth {}

/// Managed certificates: their specs, owners and targets, and the state of each renewal (pending key, delivery,
/// failures, probes) that makes a renewal resumable after a crash.
public protocol ManagedCertificateStore: Sendable {
    func createManagedCertificate(_ record: ManagedCertificateRecord, event: AuditEvent) async throws
    func managedCertificate(name: String) async throws -> ManagedCertificateRecord?
    func managedCertificates(after cursor: String?, limit: Int) async throws -> [ManagedCertificateRecord]
    func managedCertificates(cluster: String, namespace: String, secretName: String?) async throws
        -> [ManagedCertificateRecord]
    func managedTargetNamespaces() async throws -> [(cluster: String, namespace: String)]
    func dueManagedCertificates(at now: Date, limit: Int) async throws -> [ManagedCertificateRecord]
    func updateManagedCertificate(name: String, spec: ManagedCertificateSpec, at now: Date, event: AuditEvent)
        async throws -> ManagedCertificateRecord
    func deleteManagedCertificate(name: String, event: AuditEvent) async throws
    func scheduleManagedCertificate(name: String, at date: Date, event: AuditEvent) async throws
    func beginRenewal(name: String, key pending: ManagedCertificateRecord.PendingKey, at now: Date) async throws
    func completeRenewal(name: String, delivered: ManagedCertificateRecord.Delivered, event: AuditEvent) async throws
    func failRenewal(name: String, error: String, reason: String?, at now: Date, retryAt: Date, event: AuditEvent?)
        async throws
    func recordProbe(name: String, deliveredSerial serial: String, probe: ManagedCertificateRecord.Probe) async throws
}

extension CertificateLedger: ManagedCertificateStore {}

extension ManagedCertificateStore {
    public func managedCertificates() async throws -> [ManagedCertificateRecord] {
        try await managedCertificates(after: nil, limit: .max)
    }

    public func managedCertificates(cluster: String, namespace: String) async throws -> [ManagedCertificateRecord] {
        try await managedCertificates(cluster: cluster, namespace: namespace, secretName: nil)
    }

    public func failRenewal(name: String, error: String, at now: Date, retryAt: Date) async throws {
        try await failRenewal(name: name, error: error, reason: nil, at: now, retryAt: retryAt, event: nil)
    }
}
