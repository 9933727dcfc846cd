import Logging
import SignetAuthority
import SignetDelivery
import SignetKeys
import SignetKubernetes
import SignetLedger
import SignetManaged
import SwiftASN1
import Synchronization
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Managed certificates: registration under the caller's policy, and the renewal that keeps each target Secret
/// holding a fresh certificate. Every step is recorded in the ledger before the next one starts, so a renewal
/// interrupted at any point resumes where it stopped and never issues twice (see `renew`).
public final class ManagedCertificates: Sendable {
    let ledger: any ManagedCertificateStore & IssuedCertificateStore & AuditLog
    let issuance: IssuanceService
    let clusters: ClusterConnections
    let authenticator: CallerAuthenticator
    let metrics: SignetMetrics
    let logger: Logger
    let now: @Sendable () -> Date
    /// How long after a delivery the gateway is watched for the new serial.
    let probeWindow: Duration
    /// How long a claim on a renewal lasts; the renewing replica extends it every third of that while it works.
    let claimLease: Duration
    /// Forced renewals per managed certificate: each one signs, so they are bounded.
    let forcedRenewals: RateLimiter
    /// `ca.crl` for the Secrets that carry one: the CRLs of the whole chain, the intermediate's and the root's, as
    /// PEM; nil when the root's CRL is not configured (a chain missing one CA's CRL fails every client of a gateway
    /// that checks them all, so no `ca.crl` is better than half of one).
    let crlBundle: @Sendable () async -> String?
    /// Refreshes of `ca.crl` run one at a time, and one asked for while another runs becomes a single rerun that
    /// reads the newest CRL: two refreshes racing could otherwise leave an older CRL written last.
    let crlRefresh = Mutex<(running: Bool, again: Bool)>((false, false))

    public init(
        ledger: any ManagedCertificateStore & IssuedCertificateStore & AuditLog, issuance: IssuanceService,
        clusters: ClusterConnections, authenticator: CallerAuthenticator,
        metrics: SignetMetrics, logger: Logger, forcedRenewalsPerHour: Double = 10,
        probeWindow: Duration = .seconds(60), claimLease: Duration = .seconds(60),
        crlBundle: @escaping @Sendable () async -> String? = { nil }, now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.crlBundle = crlBundle
        self.forcedRenewals = RateLimiter(rate: forcedRenewalsPerHour / 3600, burst: forcedRenewalsPerHour)
        self.ledger = ledger
        self.authenticator = authenticator
        self.issuance = issuance
        self.clusters = clusters
        self.metrics = metrics
        self.logger = logger
        self.probeWindow = probeWindow
        self.claimLease = claimLease
        self.now = now
    }

    // MARK: The API's operations

    public func register(name: String, spec: ManagedCertificateSpec, by caller: Caller) async throws
        -> ManagedCertificateRecord
    {
        let at = now()
        let accepted = try await accept(spec, name: name, by: caller, action: "managed.create", at: at)
        let record = ManagedCertificateRecord(name: name, owner: caller.identity, spec: accepted, createdAt: at)
        try await ledger.createManagedCertificate(
            record, event: event(caller, "managed.create", record.name, accepted, at: at))
        logger.info(
            "managed certificate registered",
            metadata: ["name": "\(name)", "target": "\(accepted.target)", "by": "\(caller.identity)"])
        return record
    }

    public func record(named name: String) async throws -> ManagedCertificateRecord {
        guard let record = try await ledger.managedCertificate(name: name) else {
            throw LedgerError.noSuchManagedCertificate(name)
        }
        return record
    }

    /// Applies `change` to the spec. The caller must be allowed the certificate as it is and as it will be.
    public func update(name: String, by caller: Caller, change: (inout ManagedCertificateSpec) throws -> Void)
        async throws -> ManagedCertificateRecord
    {
        let existing = try await authorized(name, caller, action: "managed.update")
        var spec = existing.spec
        try change(&spec)
        let at = now()
        let accepted = try await accept(spec, name: name, by: caller, action: "managed.update", at: at)
        return try await ledger.updateManagedCertificate(
            name: name, spec: accepted, at: at, event: event(caller, "managed.update", name, accepted, at: at))
    }

    public func delete(name: String, by caller: Caller) async throws {
        let existing = try await authorized(name, caller, action: "managed.delete")
        try await ledger.deleteManagedCertificate(
            name: name, event: event(caller, "managed.delete", name, existing.spec, at: now()))
        logger.info(
            "managed certificate deleted; renewals stop", metadata: ["name": "\(name)", "by": "\(caller.identity)"])
    }

    /// A new key and certificate at the scheduler's next look (within a second).
    public func renewNow(name: String, by caller: Caller) async throws -> ManagedCertificateRecord {
        let existing = try await authorized(name, caller, action: "managed.renew")
        if let wait = forcedRenewals.take(name) {
            metrics.recordRateLimited("renewal")
            throw RateLimited(
                limit: "renewal", retryAfter: wait,
                description:
                    "managed certificate '\(name)' was renewed by request too often; its scheduled renewals go on")
        }
        let at = now()
        try await ledger.scheduleManagedCertificate(
            name: name, at: at, event: event(caller, "managed.renew", name, existing.spec, at: at))
        return try await record(named: name)
    }

    private func accept(_ spec: ManagedCertificateSpec, name: String, by caller: Caller, action: String, at: Date)
        async throws -> ManagedCertificateSpec
    {
        do {
            let accepted = try ManagedCertificateRules.validate(
                name: name, spec, policy: caller.policy, clusters: clusters.names, now: at,
                issuerNotAfter: issuance.ca.certificate.notValidAfter
            )
            return accepted
        } catch {
            try await ledger.record(
                AuditEvent(
                    at: at, actor: caller.identity, action: action, outcome: .refused, subject: name,
                    names: spec.dnsNames + spec.ipAddresses, reason: "\(error)"))
            throw error
        }
    }

    /// Whether `caller` may read the managed certificate: an auditor, its owner, or a caller allowed to change it
    /// (its names and its target are within the caller's policy).
    public func readable(_ record: ManagedCertificateRecord, by caller: Caller) -> Bool {
        if caller.isAuditor || record.owner == caller.identity { return true }
        return caller.mayIssue && ManagedCertificateRules.coverageRefusal(record.spec, policy: caller.policy) == nil
    }

    /// Whether `caller` may read certificates recorded with `requester`: its own, or a managed certificate's it may read.
    public func mayRead(requester: String, by caller: Caller) async throws -> Bool {
        if caller.isAuditor || requester == caller.identity { return true }
        let prefix = ManagedCertificateRecord.requester(for: "")
        guard requester.hasPrefix(prefix),
            let record = try await ledger.managedCertificate(name: String(requester.dropFirst(prefix.count)))
        else {
            return false
        }
        return readable(record, by: caller)
    }

    /// Whether `caller` may revoke certificates recorded with `requester`: an administrator, the requester itself, or,
    /// for a managed certificate's, its owner and callers allowed to change it (as for a forced renewal). Auditors read;
    /// they do not revoke.
    public func mayRevoke(requester: String, by caller: Caller) async throws -> Bool {
        if caller.isAdministrator || requester == caller.identity { return true }
        let prefix = ManagedCertificateRecord.requester(for: "")
        guard requester.hasPrefix(prefix),
            let record = try await ledger.managedCertificate(name: String(requester.dropFirst(prefix.count)))
        else {
            return false
        }
        return record.owner == caller.identity
            || (caller.mayIssue && ManagedCertificateRules.coverageRefusal(record.spec, policy: caller.policy) == nil)
    }

    /// The record, if the caller may manage it as it stands: its names and its target.
    private func authorized(_ name: String, _ caller: Caller, action: String) async throws -> ManagedCertificateRecord {
        let existing = try await record(named: name)
        if let refusal = ManagedCertificateRules.coverageRefusal(existing.spec, policy: caller.policy) {
            let reason = refusal.description
            try await ledger.record(
                AuditEvent(
                    at: now(), actor: caller.identity, action: action, outcome: .refused, subject: name, reason: reason)
            )
            throw AuthorizationError.managedCertificate(name, reason)
        }
        return existing
    }

    private func event(_ caller: Caller, _ action: String, _ name: String, _ spec: ManagedCertificateSpec, at: Date)
        -> AuditEvent
    {
        AuditEvent(
            at: at, actor: caller.identity, action: action, outcome: .success, subject: name,
            names: spec.dnsNames + spec.ipAddresses, reason: "target \(spec.target)")
    }
}
