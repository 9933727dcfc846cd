import Logging
import SignetAuthority
import SignetDelivery
import SignetKeys
import SignetKubernetes
import SignetLedger
import SwiftASN1
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The configured clusters, each with its client, opened once at start.
public final class ClusterConnections: Sendable {
    public struct Cluster: Sendable {
        public let settings: ClusterSettings
        public let client: KubernetesClient
    }

    private let clusters: [String: Cluster]

    private init(_ clusters: [String: Cluster]) {
        self.clusters = clusters
    }

    /// Reads each cluster's kubeconfig (or the in-cluster service account); a cluster that cannot be configured
    /// stops the start, naming the cluster.
    public static func open(_ settings: [ClusterSettings], logger: Logger) async throws -> ClusterConnections {
        var clusters: [String: Cluster] = [:]
        do {
            for cluster in settings {
                var configuration: KubernetesConfiguration
                do {
                    configuration =
                        try cluster.kubeconfig.map {
                            try KubernetesConfiguration.kubeconfig(path: $0, context: cluster.context)
                        }
                        ?? KubernetesConfiguration.inCluster()
                    configuration.allowPlainHTTP = cluster.allowPlainHTTP
                } catch {
                    throw ConfigurationError("clusters.\(cluster.name): \(error)")
                }
                clusters[cluster.name] = Cluster(
                    settings: cluster, client: try KubernetesClient(configuration: configuration, logger: logger))
                logger.info(
                    "cluster configured",
                    metadata: [
                        "cluster": "\(cluster.name)", "server": "\(configuration.server)",
                        "gateway": "\(cluster.gateway ?? "-")",
                    ])
            }
        } catch {
            for cluster in clusters.values { try? await cluster.client.shutdown() }
            throw error
        }
        return ClusterConnections(clusters)
    }

    public subscript(name: String) -> Cluster? { clusters[name] }
    public var names: [String] { clusters.keys.sorted() }

    public func shutdown() async {
        for cluster in clusters.values { try? await cluster.client.shutdown() }
    }
}

/// Managed certificates: registration under the caller's policy, and the renewal that keeps each target Secret
/// holding a fresh certificate. Every step is recorded in the ledger before the next one starts, so a renewal
/// interrupted at any point resumes where it stopped and never issues twice (see `renew`).
public final class ManagedCertificates: Sendable {
    private let ledger: any ManagedCertificateStore & IssuedCertificateStore & AuditLog
    private let issuance: IssuanceService
    private let clusters: ClusterConnections
    private let authenticator: CallerAuthenticator
    private let metrics: SignetMetrics
    private let logger: Logger
    private let now: @Sendable () -> Date
    /// How long after a delivery the gateway is watched for the new serial.
    let probeWindow: Duration
    /// Forced renewals per managed certificate: each one signs, so they are bounded.
    private let forcedRenewals: RateLimiter

    public init(
        ledger: any ManagedCertificateStore & IssuedCertificateStore & AuditLog, issuance: IssuanceService,
        clusters: ClusterConnections, authenticator: CallerAuthenticator,
        metrics: SignetMetrics, logger: Logger, forcedRenewalsPerHour: Double = 10,
        probeWindow: Duration = .seconds(60),
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
        self.now = now
    }

    /// `ca.crl` for the Secrets that carry one: the CRLs of the whole chain, the intermediate's and the root's, as
    /// PEM; nil when the root's CRL is not configured (a chain missing one CA's CRL fails every client of a gateway
    /// that checks them all, so no `ca.crl` is better than half of one).
    let crlBundle: @Sendable () async -> String?

    /// After a CRL is published: every managed certificate whose Secret carries `ca.crl` gets the new one, written
    /// through the same owner-checked, conflict-safe path as certificates (nothing is issued).
    public func refreshCRLs() async {
        guard let bundle = await crlBundle() else { return }
        do {
            for record in try await ledger.managedCertificates()
            where record.spec.deliversCRL && record.delivered != nil {
                guard let cluster = clusters[record.spec.target.cluster] else { continue }
                let target = record.spec.target
                do {
                    if try await SecretDelivery(client: cluster.client, logger: logger).refreshCRL(
                        bundle, namespace: target.namespace, name: target.secretName,
                        owner: ManagedCertificateRecord.secretOwner(for: record.name)
                    ) {
                        logger.info("ca.crl refreshed", metadata: ["name": "\(record.name)", "target": "\(target)"])
                    }
                } catch {
                    logger.warning(
                        "could not refresh ca.crl; the next CRL tries again",
                        metadata: ["name": "\(record.name)", "error": "\(error)"])
                }
            }
        } catch {
            logger.error("could not list managed certificates to refresh ca.crl", metadata: ["error": "\(error)"])
        }
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

    // MARK: Renewal

    func due(limit: Int) async throws -> [ManagedCertificateRecord] {
        try await ledger.dueManagedCertificates(at: now(), limit: limit)
    }

    /// One renewal, from a fresh key to the Secret written and the ledger updated; a failure is recorded and
    /// retried with backoff. Afterwards the gateway is probed, if one is configured for the cluster.
    func renew(_ record: ManagedCertificateRecord) async {
        let started = now()
        if record.lastErrorReason == Self.revokedReason, let client = clusters[record.spec.target.cluster]?.client {
            // The ledger made this renewal due when the current certificate was revoked; the Secret's readers learn why.
            let target = record.spec.target
            if let secret = try? await client.getSecret(namespace: target.namespace, name: target.secretName) {
                try? await client.recordEvent(
                    regarding: secret, type: "Warning", reason: Self.revokedReason, action: "Renew",
                    note: "managed certificate \(record.name): \(record.lastError ?? "its certificate was revoked")")
            }
        }
        do {
            let delivered = try await attempt(record, at: started)
            metrics.recordRenewal(.delivered)
            logger.info(
                "managed certificate delivered",
                metadata: [
                    "name": "\(record.name)", "serial": "\(delivered.serial)", "target": "\(record.spec.target)",
                    "renewalTime": "\(delivered.renewalTime.formatted(.iso8601))",
                ])
            if let gateway = clusters[record.spec.target.cluster]?.settings.gateway {
                await probe(record, serial: delivered.serial, gateway: gateway)
            }
        } catch let refusal as RenewalUnauthorized {
            await refuse(record, refusal, at: started)
        } catch {
            metrics.recordRenewal(.failed)
            let failures = record.attempts + 1
            let retryAt = now().addingTimeInterval(
                RenewalSchedule.retryDelay(afterFailures: failures, jitter: .random(in: 0..<1)).timeInterval)
            logger.warning(
                "managed certificate not delivered; will retry",
                metadata: [
                    "name": "\(record.name)", "target": "\(record.spec.target)", "attempts": "\(failures)",
                    "retryAt": "\(retryAt.formatted(.iso8601))", "error": "\(error)",
                ])
            do {
                try await ledger.failRenewal(name: record.name, error: "\(error)", at: started, retryAt: retryAt)
            } catch {
                logger.error(
                    "could not record a failed renewal", metadata: ["name": "\(record.name)", "error": "\(error)"])
            }
        }
    }

    /// `last_error_reason` of a managed certificate whose current certificate was revoked (set by the ledger).
    static let revokedReason = "Revoked"

    /// The owner's credential, as it is now, must still allow the certificate: a revoked token or a narrowed policy
    /// stops its renewals. Nothing is issued; the status says `Unauthorized`, an Event on the Secret and a metric say
    /// so once, and the normal backoff retries, so renewals resume by themselves once the owner is allowed again.
    private func authorize(_ record: ManagedCertificateRecord) async throws {
        let policy = try await authenticator.currentPolicy(of: record.owner)
        if let refusal = ManagedCertificateRules.policyRefusal(record.spec, policy: policy) {
            throw RenewalUnauthorized("\(record.owner): \(refusal)")
        }
    }

    private func refuse(_ record: ManagedCertificateRecord, _ refusal: RenewalUnauthorized, at started: Date) async {
        metrics.recordRenewal(.unauthorized)
        let retryAt = now().addingTimeInterval(
            RenewalSchedule.retryDelay(afterFailures: record.attempts + 1, jitter: .random(in: 0..<1)).timeInterval)
        let reason = "renewal not authorized: \(refusal.description)"
        logger.warning(
            "managed certificate not renewed: its owner is no longer allowed it",
            metadata: [
                "name": "\(record.name)", "owner": "\(record.owner)", "reason": "\(refusal.description)",
                "retryAt": "\(retryAt.formatted(.iso8601))",
            ])
        let firstTime = record.lastErrorReason != RenewalUnauthorized.reason
        do {
            try await ledger.failRenewal(
                name: record.name, error: reason, reason: RenewalUnauthorized.reason, at: started, retryAt: retryAt,
                event: firstTime
                    ? AuditEvent(
                        at: started, actor: "signet", action: "managed.renew", outcome: .refused, subject: record.name,
                        names: record.spec.dnsNames + record.spec.ipAddresses, reason: reason) : nil
            )
        } catch {
            logger.error(
                "could not record a refused renewal", metadata: ["name": "\(record.name)", "error": "\(error)"])
        }
        guard firstTime, let client = clusters[record.spec.target.cluster]?.client else { return }
        let target = record.spec.target
        let secret =
            (try? await client.getSecret(namespace: target.namespace, name: target.secretName))
            ?? KubernetesObject(
                .object([
                    "kind": .string("Secret"),
                    "metadata": .object(["name": .string(target.secretName), "namespace": .string(target.namespace)]),
                ]))
        try? await client.recordEvent(
            regarding: secret, type: "Warning", reason: RenewalUnauthorized.reason, action: "Renew",
            note: "managed certificate \(record.name) was not renewed: \(refusal.description)")
    }

    /// The steps, each durable before the next: (1) the key, remembered as pending; (2) the certificate for that
    /// key, found in the ledger if an earlier attempt signed it, else issued; (3) the Secret; (4) the ledger row.
    private func attempt(_ record: ManagedCertificateRecord, at start: Date) async throws
        -> ManagedCertificateRecord.Delivered
    {
        let spec = record.spec
        guard let cluster = clusters[spec.target.cluster] else {
            throw RenewalFailure("cluster '\(spec.target.cluster)' is no longer configured")
        }
        let algorithm = spec.keyAlgorithm
        let owner = ManagedCertificateRecord.secretOwner(for: record.name)
        try await authorize(record)

        // (1) The key. A pending key of an older spec generation belongs to a certificate nobody wants any more.
        let pending: ManagedCertificateRecord.PendingKey
        let key: Certificate.PrivateKey
        if let kept = record.pendingKey, kept.generation == record.generation,
            let read = try? PrivateKeyPEM.read(kept.pem)
        {
            pending = kept
            key = read
        } else {
            let (fresh, pem) = try algorithm.generate()
            pending = .init(pem: pem, publicKeySHA256: fresh.publicKey.sha256Fingerprint, generation: record.generation)
            key = fresh
            try await ledger.beginRenewal(name: record.name, key: pending, at: start)
        }

        // (2) The certificate: one already signed for this key by an interrupted attempt, if still fresh.
        let requester = ManagedCertificateRecord.requester(for: record.name)
        let entry: CertificateEntry
        if let signed = try await ledger.certificate(requester: requester, publicKeySHA256: pending.publicKeySHA256),
            signed.status(at: start) == .valid,
            start < signed.notAfter.addingTimeInterval(-spec.renewBefore.timeInterval)
        {
            logger.info(
                "resuming an interrupted renewal with the certificate it already has",
                metadata: ["name": "\(record.name)", "serial": "\(signed.serial)"])
            entry = signed
        } else {
            // Nothing is signed for a Secret this certificate may not write (another owner keeps it, or it is not
            // Signet's and not to be adopted): the write would be refused, and every retry would sign again.
            if let existing = try await cluster.client.getSecret(
                namespace: spec.target.namespace, name: spec.target.secretName),
                let refusal = TLSSecret.refusal(toWrite: existing, owner: owner, adopt: spec.adopt)
            {
                throw refusal
            }
            let request = IssuanceRequest(
                csrPEM: try algorithm.signingRequest(for: key), dnsNames: spec.dnsNames, ipAddresses: spec.ipAddresses,
                duration: "\(spec.durationSeconds)s", profile: spec.profile
            )
            // The signer's queue serves the certificate closest to expiry first.
            let remaining = record.delivered.map { $0.notAfter.timeIntervalSince(start) } ?? 0
            let issued = try await SignAdmission.$urgency.withValue(max(0, remaining)) {
                try await issuance.issue(request, for: Caller(identity: requester, policy: spec.renewalPolicy))
            }
            entry = issued.entry
        }

        // (3) The Secret.
        let leaf = try Certificate(derEncoded: entry.der)
        let renewalTime = RenewalSchedule.renewalTime(
            notBefore: entry.notBefore, notAfter: entry.notAfter, renewBefore: spec.renewBefore,
            jitter: .random(in: 0..<1)
        )
        var contents = TLSSecretContents(
            chain: [leaf] + issuance.ca.chainAboveLeaf, privateKeyPEM: pending.pem, root: issuance.ca.root,
            issuer: "\(issuance.ca.certificate.subject)", renewAfter: renewalTime
        )
        contents.templateLabels = spec.secretLabels
        contents.templateAnnotations = spec.secretAnnotations
        contents.owner = owner
        var password: String?
        if let reference = spec.pkcs12Password {
            password = try await readPassword(reference, namespace: spec.target.namespace, client: cluster.client)
        }
        try contents.addOutputs(spec.additionalOutputFormats ?? [], pkcs12Password: password)
        if spec.deliversCRL {
            if let bundle = await crlBundle() {
                contents.outputs[TLSSecret.crlKey] = Array(bundle.utf8)
            } else {
                logger.warning(
                    "ca.crl not written: the root's CRL is not configured (crl.rootCRL), and a chain missing one fails every client",
                    metadata: ["name": "\(record.name)"])
            }
        }
        let written = try await SecretDelivery(client: cluster.client, logger: logger)
            .deliver(contents, namespace: spec.target.namespace, name: spec.target.secretName, adopt: spec.adopt)

        // (4) The ledger: the delivery, and the next renewal.
        let delivered = ManagedCertificateRecord.Delivered(
            serial: entry.serial, notBefore: entry.notBefore, notAfter: entry.notAfter, renewalTime: renewalTime,
            generation: record.generation, deliveredAt: now(), secretResourceVersion: written.resourceVersion
        )
        try await ledger.completeRenewal(
            name: record.name, delivered: delivered,
            event: AuditEvent(
                at: delivered.deliveredAt, actor: requester, action: "certificate.deliver", outcome: .success,
                subject: entry.serial,
                names: spec.dnsNames + spec.ipAddresses,
                reason: "Secret \(spec.target) (resourceVersion \(written.resourceVersion ?? "?"))"
            ))
        return delivered
    }

    /// The keystore password: the bytes of one key of a Secret beside the target, as cert-manager reads it.
    private func readPassword(_ reference: SecretKeyReference, namespace: String, client: KubernetesClient) async throws
        -> String
    {
        guard let secret = try await client.getSecret(namespace: namespace, name: reference.name) else {
            throw RenewalFailure("the PKCS#12 password Secret \(namespace)/\(reference.name) does not exist")
        }
        guard let bytes = secret.data[reference.key], let password = String(bytes: bytes, encoding: .utf8),
            !password.isEmpty
        else {
            throw RenewalFailure(
                "the PKCS#12 password Secret \(namespace)/\(reference.name) has no non-empty key '\(reference.key)'")
        }
        return password
    }

    /// Watches the gateway for the delivered serial: gateways pick Secrets up within seconds (Istio's SDS), so it is
    /// asked every two seconds for `probeWindow`; the last observation is recorded either way.
    private func probe(_ record: ManagedCertificateRecord, serial: String, gateway: String) async {
        guard let (host, port) = HostPort.split(gateway),
            let serverName = record.spec.dnsNames.first ?? record.spec.ipAddresses.first
        else { return }
        let deadline = ContinuousClock.now + probeWindow
        var observation = ManagedCertificateRecord.Probe(at: now(), servedSerial: nil, error: "not probed")
        while !Task.isCancelled {
            do {
                let served = try await DeliveryProbe.servedSerial(host: host, port: port, serverName: serverName)
                observation = .init(
                    at: now(), servedSerial: served,
                    error: served == serial ? nil : "the gateway still serves \(served)")
            } catch {
                observation = .init(at: now(), servedSerial: nil, error: "\(error)")
            }
            if observation.servedSerial == serial || ContinuousClock.now >= deadline { break }
            try? await Task.sleep(for: .seconds(2))
        }
        metrics.recordProbe(matched: observation.servedSerial == serial)
        if observation.servedSerial != serial {
            logger.warning(
                "the gateway does not serve the delivered certificate",
                metadata: [
                    "name": "\(record.name)", "gateway": "\(gateway)", "serial": "\(serial)",
                    "observed": "\(observation.error ?? "")",
                ])
        }
        try? await ledger.recordProbe(name: record.name, deliveredSerial: serial, probe: observation)
    }

}

/// The owner's current credential does not allow the renewal (revoked, or its policy narrowed).
struct RenewalUnauthorized: Error, CustomStringConvertible {
    static let reason = "Unauthorized"
    let description: String
    init(_ description: String) { self.description = description }
}

/// A renewal that cannot proceed for a reason of Signet's own (not the signer's, not the API server's).
struct RenewalFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
