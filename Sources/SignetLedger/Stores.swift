import SignetAuthority
import SignetManaged

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
    /// The latest CRL's number alone: how a replica learns cheaply that another one published a newer CRL.
    func latestCRLNumber(issuerKeyID: String) async throws -> Int64?
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
    /// Claims up to `limit` managed certificates due at `now` that no replica holds a live claim on, each until
    /// `until`, and returns them: with several replicas on one database, exactly one renews each. A claim ends when
    /// the renewal completes or fails, or lapses at `until` if its replica died, and another replica then finishes
    /// the renewal from the state the ledger holds (never a second certificate).
    func claimDueManagedCertificates(at now: Date, until: Date, limit: Int) async throws -> [ManagedCertificateRecord]
    /// Keeps the claim of a renewal still running (its replica's heartbeat).
    func extendClaim(name: String, until: Date) async throws
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

/// Named leases between replicas: one holder at a time (the watch of a cluster's Secrets), taken over by another
/// replica once the holder stops renewing it.
public protocol LeaseStore: Sendable {
    /// Takes `name` for `holder` until `until` if it is free, lapsed at `now` or already `holder`'s; returns whether
    /// `holder` now holds it.
    func acquireLease(_ name: String, holder: String, until: Date, now: Date) async throws -> Bool
    /// Gives the lease up, if `holder` holds it, so that another replica takes it without waiting for it to lapse.
    func releaseLease(_ name: String, holder: String) async throws
}

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

/// Everything a Signet server keeps, as one backend provides it: what `signet serve` opens, composes into its services
/// (each of which sees only the narrow protocol it needs), and closes when it stops.
public protocol Ledger: IssuedCertificateStore, StoreHealth, TokenStore, AuditLog, RevocationListStore,
    ManagedCertificateStore, ACMEStore, LeaseStore, LedgerTransfer
{
    /// Finishes or fails what is in flight and releases the database.
    func close() async throws
    /// Write transactions group commit has made so far: fewer than the writes when concurrent ones shared them.
    var groupCommitTransactions: Int { get async }
}

extension CertificateLedger: Ledger {}
