import Foundation
import Logging
import SignetAuthority
import SignetClient
import SignetDelivery
import SignetKeys
import SignetKubernetes
import SignetOpenAPI
import Synchronization
import X509

/// Reconciles `certificates.signet.dev` objects the way cert-manager splits its certificate controllers: this type
/// watches (Certificates, the Secrets it writes, Signet's CRLs) and triggers, deciding with the pure `Reconciler`;
/// `CertificateReadiness` owns `Ready` while nothing is issued, `CertificateIssuing` owns `Issuing` and runs the one
/// renewal engine, `PendingKeySecret` keeps the key of an issuance in progress, and `CertificateStatusWriter` writes
/// the typed `CertificateStatus`. Keys are made here, in the cluster, and never leave it.
public final class CertificateController: Sendable {
    typealias Key = ObjectKey

    let client: KubernetesClient
    let issuer: SignetClient
    let settings: ControllerSettings
    let metrics: ControllerMetrics
    let logger: Logger
    let queue = WorkQueue<Key>()
    /// The Certificates the watch has seen, by namespace: where the Secrets it writes are watched.
    let certificatesByNamespace = Mutex<[String: Set<String>]>([:])
    /// What Signet last said of each held serial: its revocation reason (nil: not revoked), and when it was asked.
    let revocations = Mutex<[String: (reason: String?, checked: ContinuousClock.Instant)]>([:])
    /// The chain's CRLs as Signet last served them (PEM), for `ca.crl`: nil until first read, `.some(nil)` when Signet
    /// has none (its root CRL is not configured).
    let chainCRLs = Mutex<String??>(nil)
    let now: @Sendable () -> Date
    let statusWriter: CertificateStatusWriter
    let readiness: CertificateReadiness
    let issuing: CertificateIssuing

    public init(
        client: KubernetesClient, issuer: SignetClient, settings: ControllerSettings, metrics: ControllerMetrics,
        logger: Logger,
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.client = client
        self.issuer = issuer
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        self.now = now
        statusWriter = CertificateStatusWriter(client: client, logger: logger, now: now)
        readiness = CertificateReadiness(status: statusWriter, metrics: metrics, logger: logger)
        issuing = CertificateIssuing(
            client: client, signet: issuer, status: statusWriter, metrics: metrics, logger: logger, now: now)
    }

    /// Watches and workers until cancelled (when leadership is lost, or at shutdown).
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await self.follow(.certificates, labelSelector: nil) { object, deleted in
                    let key = Key(namespace: object.namespace ?? "", name: object.name)
                    self.certificatesByNamespace.withLock { seen in
                        if deleted {
                            seen[key.namespace]?.remove(key.name)
                            if seen[key.namespace]?.isEmpty == true { seen[key.namespace] = nil }
                        } else {
                            seen[key.namespace, default: []].insert(key.name)
                        }
                    }
                    return key
                }
            }
            group.addTask { await self.followSecrets() }
            group.addTask { await self.resyncPeriodically() }
            group.addTask { await self.followCRLs() }
            if settings.gatewayShim {
                group.addTask { await self.followGateways() }
            }
            group.addTask {
                await self.queue.process(workers: self.settings.concurrency, metrics: self.metrics) {
                    await self.reconcile($0)
                }
            }
        }
    }

    static let certificateAnnotation = "signet.dev/certificate-name"

    // MARK: Watching

    /// Each object listed, changed or deleted enqueues the Certificate it belongs to.
    private func follow(
        _ kind: ResourceKind, labelSelector: String?, key: @escaping @Sendable (KubernetesObject, Bool) -> Key?
    ) async {
        await client.follow(kind, namespace: settings.namespace, labelSelector: labelSelector) { observed in
            switch observed {
            case .listed(let items):
                for item in items { if let key = key(item, false) { await self.queue.add(key) } }
            case .changed(let object):
                if let key = key(object, false) { await self.queue.add(key) }
            case .deleted(let object):
                if let key = key(object, true) { await self.queue.add(key) }
            }
        }
    }

    /// The Secrets it writes, watched in each namespace that has Certificates (as the Certificate watch saw them, so
    /// no listing of its own): the controller may read Secrets only where its namespaced Roles allow
    /// (deploy/namespace-access), never cluster-wide. Watches start and stop as Certificates appear in and leave
    /// namespaces; a namespace without a Role shows up as 403s in the log and as the Certificate's failed issuance.
    private func followSecrets() async {
        // One task per namespace, since a task group cannot cancel one child; all are cancelled with this one.
        var watches: [String: Task<Void, Never>] = [:]
        while !Task.isCancelled {
            let wanted = settings.namespace.map { [$0] } ?? Set(certificatesByNamespace.withLock { $0.keys })
            for namespace in wanted where watches[namespace] == nil {
                watches[namespace] = Task { await self.followSecrets(in: namespace) }
            }
            for (namespace, task) in watches where !wanted.contains(namespace) {
                task.cancel()
                watches[namespace] = nil
            }
            try? await Task.sleep(for: settings.namespaceRefresh)
        }
        for task in watches.values { task.cancel() }
    }

    private func followSecrets(in namespace: String) async {
        await client.follow(
            .secrets, namespace: namespace, labelSelector: "\(TLSSecret.managedByLabel)=\(TLSSecret.managedByValue)"
        ) { observed in
            let objects: [KubernetesObject]
            switch observed {
            case .listed(let items): objects = items
            case .changed(let object), .deleted(let object): objects = [object]
            }
            for object in objects {
                if let name = object.annotations[Self.certificateAnnotation] {
                    await self.queue.add(Key(namespace: namespace, name: name))
                }
            }
        }
    }

    private func resyncPeriodically() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.resync)
            guard let items = try? await client.list(.certificates, namespace: settings.namespace).items else {
                continue
            }
            for item in items { await queue.add(Key(namespace: item.namespace ?? "", name: item.name)) }
        }
    }

    /// Reads the chain's CRLs every `crlRefresh`; a change (a revocation, a re-signing, a new root CRL) sends every
    /// Certificate back to reconciliation, which rewrites the `ca.crl` of those that carry one.
    private func followCRLs() async {
        while !Task.isCancelled {
            do {
                let served = try await issuer.chainCRLs()
                let previous = chainCRLs.withLock { known in
                    defer { known = .some(served) }
                    return known
                }
                if let previous, previous != served {
                    let keys = certificatesByNamespace.withLock { seen in
                        seen.flatMap { namespace, names in names.map { Key(namespace: namespace, name: $0) } }
                    }
                    logger.info(
                        "the chain's CRLs changed; refreshing ca.crl", metadata: ["certificates": "\(keys.count)"])
                    for key in keys { await queue.add(key) }
                }
                if served == nil, previous != .some(nil) {
                    logger.warning(
                        "Signet serves no CRL for its root (crl.rootCRL is not set): Certificates asking for ca.crl get none until it does"
                    )
                }
            } catch {
                logger.warning("cannot read the chain's CRLs from Signet", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: settings.crlRefresh)
        }
    }

    /// The `ca.crl` a Certificate's Secret should hold: the chain's CRLs when it asks for them and Signet has them.
    private func caCRL(for spec: CertificateSpec) async throws -> [UInt8]? {
        guard spec.deliversCRL else { return nil }
        let pem: String?
        if let known = chainCRLs.withLock({ $0 }) {
            pem = known
        } else {
            pem = try await issuer.chainCRLs()
            chainCRLs.withLock { $0 = .some(pem) }
        }
        return pem.map { Array($0.utf8) }
    }

    // MARK: Reconciling

    typealias Requeue = WorkQueue<Key>.Outcome

    /// One Certificate brought to its desired state (cert-manager's trigger: decide whether to issue, then hand over
    /// to readiness or issuing); returns when to look again (nil: only on the next change).
    func reconcile(_ key: Key) async -> Requeue? {
        let object: KubernetesObject
        do {
            guard let found = try await client.get(.certificates, namespace: key.namespace, name: key.name) else {
                metrics.forget(key.namespace, key.name)
                return nil
            }
            object = found
        } catch {
            logger.warning("cannot read a Certificate", metadata: ["certificate": "\(key)", "error": "\(error)"])
            return Requeue(after: .seconds(5), failed: true)
        }
        let spec: CertificateSpec
        do {
            spec = try CertificateSpec(object)
        } catch {
            await readiness.invalid(key, object: object, error: error)
            return nil
        }
        guard spec.issuerName == settings.issuerName else { return nil }
        do {
            let secret = try await client.getSecret(namespace: key.namespace, name: spec.secretName)
            let roots = try await issuer.caChain()
            let mayAdopt = Self.mayAdopt(object)
            let crl = try await caCRL(for: spec)
            let decision = Reconciler.decide(
                spec: spec, secret: secret, owner: Self.owner(key), mayAdopt: mayAdopt,
                record: CertificateStatus(object.json["status"]).issuanceRecord, trustedRoots: roots, caCRL: crl,
                now: now()
            )
            let issue = { (trigger: CertificateIssuing.Trigger) in
                await self.issuing.issue(
                    key, object: object, spec: spec, secret: secret, roots: roots, crl: crl, trigger: trigger,
                    adopt: mayAdopt)
            }
            switch decision {
            case .upToDate(let held), .refreshMetadata(let held):
                // A good certificate by its dates may still have been revoked: Signet is asked now and then.
                if let reason = await revocation(of: held.serial, namespace: key.namespace) {
                    let message = "certificate \(held.serial) was revoked (\(reason)); issuing a new one with a new key"
                    await statusWriter.announce(object, type: "Warning", reason: "Revoked", note: message)
                    return await issue(.init(reason: "Revoked", message: message, newKey: true))
                }
                if case .refreshMetadata = decision, let secret {
                    try await issuing.rewrite(
                        secret, key: key, spec: spec, held: held, roots: roots, crl: crl, adopt: mayAdopt)
                }
                await readiness.upToDate(key, spec: spec, held: held)
                return Requeue(after: min(Self.delay(until: held.renewalTime, now: now()), settings.revocationCheck))
            case .backingOff(let retryAt):
                return Requeue(after: Self.delay(until: retryAt, now: now()))
            case let .blocked(reason, message):
                await readiness.blocked(key, object: object, spec: spec, reason: reason, message: message)
                // The Secret's watch brings it back when the Secret changes; the resync and this retry otherwise.
                return Requeue(after: .seconds(60), failed: true)
            case let .issue(reason, message):
                return await issue(.init(reason: reason, message: message))
            }
        } catch {
            logger.warning("reconcile failed", metadata: ["certificate": "\(key)", "error": "\(error)"])
            return Requeue(after: .seconds(5), failed: true)
        }
    }

    /// The owner name this Certificate writes into its Secret's `signet.dev/owner`.
    static func owner(_ key: Key) -> String { "certificate/\(key.namespace)/\(key.name)" }

    /// A Certificate a user made may take over an existing Secret, as cert-manager's do (the user named it, in their
    /// own namespace); one the Gateway shim made may not, since a Gateway's author does not own the namespace's Secrets.
    static func mayAdopt(_ certificate: KubernetesObject) -> Bool {
        certificate.labels[GatewayShim.gatewayLabel] == nil
    }

    /// The revocation reason of a certificate Signet revoked, asked at most once per `revocationCheck` for each serial
    /// (nil: not revoked, or Signet could not be asked; the next check asks again).
    private func revocation(of serial: String, namespace: String) async -> String? {
        let now = ContinuousClock.now
        if let known = revocations.withLock({ $0[serial] }), now - known.checked < settings.revocationCheck {
            return known.reason
        }
        do {
            let record = try await issuer.record(serial: serial, namespace: namespace)
            let reason = record?.status == .revoked ? (record?.revocationReason ?? "unspecified") : nil
            revocations.withLock { revocations in
                if revocations.count > 10_000 { revocations.removeAll() }
                revocations[serial] = (reason, now)
            }
            return reason
        } catch {
            logger.warning(
                "cannot ask Signet whether a certificate was revoked",
                metadata: ["serial": "\(serial)", "error": "\(error)"])
            return nil
        }
    }

    /// How long until `date`, and a little after, so the look finds it passed.
    static func delay(until date: Date, now: Date) -> Duration {
        .milliseconds(Int64(max(0, date.timeIntervalSince(now)) * 1000) + 50)
    }
}
