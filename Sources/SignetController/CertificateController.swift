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

public struct ControllerSettings: Sendable {
    /// Only this namespace, or all of them.
    public var namespace: String?
    /// Certificates whose `issuerRef.name` is this are served; others are left to other controllers.
    public var issuerName = "signet"
    public var concurrency = 4
    /// Every Certificate is looked at again this often, whatever the watches said.
    public var resync: Duration = .seconds(300)
    /// Make Certificates for Istio Gateways annotated `signet.dev/issue: "true"`.
    public var gatewayShim = false
    /// How often the namespaces whose Secrets are watched are brought up to date with the Certificates.
    public var namespaceRefresh: Duration = .seconds(5)
    /// Namespaces besides their own where Gateways of a namespace may have Certificates made.
    public var gatewayNamespaces = GatewayShim.GatewayNamespaces()
    /// How often Signet is asked whether a Certificate's current certificate was revoked; one that was is replaced at
    /// once with a new key.
    public var revocationCheck: Duration = .seconds(60)
    /// How often Signet's chain CRLs are read; when they changed, every Secret that carries `ca.crl` is rewritten.
    public var crlRefresh: Duration = .seconds(5)
    /// Act as cert-manager's external issuer: SignetClient and SignetClusterIssuer, and CertificateRequests naming them.
    public var certManager = false
    /// The audience of the projected token the controller presents to Signet (what issuers may name).
    public var tokenAudience = "signet"
    /// Kubernetes CSR signer names Signet serves, each with the namespace whose policy it signs under.
    public var csrSigners: [String: String] = [:]

    public init() {}
}

/// Reconciles `certificates.signet.dev` objects: watches them and the Secrets it writes, decides with `Reconciler`,
/// and issues through Signet. Keys are made here, in the cluster, and never leave it.
public final class CertificateController: Sendable {
    struct Key: Hashable, Sendable, CustomStringConvertible {
        let namespace: String
        let name: String
        var description: String { "\(namespace)/\(name)" }
    }

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
    static let nextKeyAnnotation = "signet.dev/next-key-for"

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

    /// One Certificate brought to its desired state; returns when to look again (nil: only on the next change).
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
            await updateStatus(key) { status, generation in
                Conditions.set(
                    &status, type: "Ready", status: "False", reason: "InvalidSpec", message: error.description,
                    generation: generation, now: self.now())
            }
            await announce(object, type: "Warning", reason: "InvalidSpec", note: error.description)
            metrics.observe(key.namespace, key.name, secret: nil, held: nil, ready: false)
            return nil
        }
        guard spec.issuerName == settings.issuerName else { return nil }
        do {
            let secret = try await client.getSecret(namespace: key.namespace, name: spec.secretName)
            let roots = try await trustedRoots()
            let record = IssuanceRecord(status: object.json["status"])
            let owner = Self.owner(key), mayAdopt = Self.mayAdopt(object)
            let crl = try await caCRL(for: spec)
            let decision = Reconciler.decide(
                spec: spec, secret: secret, owner: owner, mayAdopt: mayAdopt, record: record, trustedRoots: roots,
                caCRL: crl, now: now()
            )
            switch decision {
            case .upToDate(let held), .refreshMetadata(let held):
                // A good certificate by its dates may still have been revoked: Signet is asked now and then.
                if let reason = await revocation(of: held.serial, namespace: key.namespace) {
                    let message = "certificate \(held.serial) was revoked (\(reason)); issuing a new one with a new key"
                    await announce(object, type: "Warning", reason: "Revoked", note: message)
                    return await issue(
                        key, object: object, spec: spec, secret: secret, roots: roots, crl: crl, reason: "Revoked",
                        message: message,
                        record: record, adopt: mayAdopt, newKey: true)
                }
            default:
                break
            }
            switch decision {
            case .upToDate(let held):
                await recordHeld(key, object: object, spec: spec, held: held)
                return Requeue(after: min(until(held.renewalTime), settings.revocationCheck))
            case .refreshMetadata(let held):
                if let secret {
                    try await rewriteMetadata(
                        secret, spec: spec, certificate: key, held: held, crl: crl, adopt: mayAdopt)
                }
                await recordHeld(key, object: object, spec: spec, held: held)
                return Requeue(after: min(until(held.renewalTime), settings.revocationCheck))
            case .backingOff(let retryAt):
                return Requeue(after: until(retryAt))
            case let .blocked(reason, message):
                await block(key, object: object, spec: spec, reason: reason, message: message)
                // The Secret's watch brings it back when the Secret changes; the resync and this retry otherwise.
                return Requeue(after: .seconds(60), failed: true)
            case let .issue(reason, message):
                return await issue(
                    key, object: object, spec: spec, secret: secret, roots: roots, crl: crl, reason: reason,
                    message: message, record: record,
                    adopt: mayAdopt)
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

    /// Not Ready, with the reason, and a Warning Event when the reason is new; nothing is issued.
    private func block(_ key: Key, object: KubernetesObject, spec: CertificateSpec, reason: String, message: String)
        async
    {
        let known = Conditions.get(object.json["status"] ?? .object([:]), "Ready")?["reason"]?.string == reason
        await updateStatus(key) { status, generation in
            let at = self.now()
            Conditions.set(
                &status, type: "Ready", status: "False", reason: reason, message: message, generation: generation,
                now: at)
            Conditions.set(
                &status, type: "Issuing", status: "False", reason: reason, message: message, generation: generation,
                now: at)
        }
        if !known { await announce(object, type: "Warning", reason: reason, note: message) }
        logger.warning(
            "not writing a Secret", metadata: ["certificate": "\(key)", "reason": "\(reason)", "message": "\(message)"])
        metrics.observe(key.namespace, key.name, secret: spec.secretName, held: nil, ready: false)
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

    private func issue(
        _ key: Key, object: KubernetesObject, spec: CertificateSpec, secret: KubernetesObject?, roots: [Certificate],
        crl: [UInt8]?,
        reason: String, message: String, record: IssuanceRecord, adopt: Bool, newKey: Bool = false
    ) async -> Requeue {
        logger.info("issuing", metadata: ["certificate": "\(key)", "reason": "\(reason)"])
        await updateStatus(key) { status, generation in
            Conditions.set(
                &status, type: "Issuing", status: "True", reason: reason, message: message, generation: generation,
                now: self.now())
        }
        do {
            let held = try await performIssuance(
                key, spec: spec, secret: secret, roots: roots, crl: crl,
                deliveredSerial: object.json["status"]?["serial"]?.string, adopt: adopt,
                newKey: newKey
            )
            await updateStatus(key) { status, generation in
                let at = self.now()
                Conditions.set(
                    &status, type: "Ready", status: "True", reason: "Ready",
                    message: "Certificate is up to date and has not expired", generation: generation, now: at)
                Conditions.set(
                    &status, type: "Issuing", status: "False", reason: "Issued",
                    message: "Issued certificate \(held.serial)", generation: generation, now: at)
                Self.write(held, into: &status)
                status["revision"] = .number((status["revision"]?.number ?? 0) + 1)
                status["failedIssuanceAttempts"] = nil
                status["lastFailureTime"] = nil
                status["nextPrivateKeySecretName"] = nil
            }
            await announce(
                object, type: "Normal", reason: "Issued",
                note: "Certificate \(held.serial) issued by Signet and stored in Secret \(spec.secretName) (\(reason))")
            metrics.recordIssuance(succeeded: true)
            metrics.observe(key.namespace, key.name, secret: spec.secretName, held: held, ready: true)
            return Requeue(after: until(held.renewalTime))
        } catch {
            let failures = record.failedAttempts + 1
            let delay = RenewalSchedule.retryDelay(afterFailures: failures, jitter: 0.5)
            let stillValid = secret.flatMap { Reconciler.inspectedLeaf($0, roots: roots, now: now()) } != nil
            await updateStatus(key) { status, generation in
                let at = self.now()
                Conditions.set(
                    &status, type: "Issuing", status: "False", reason: "Failed", message: "\(error)",
                    generation: generation, now: at)
                if !stillValid {
                    Conditions.set(
                        &status, type: "Ready", status: "False", reason: "Failed", message: "\(error)",
                        generation: generation, now: at)
                }
                status["failedIssuanceAttempts"] = .number(Double(failures))
                status["lastFailureTime"] = .string(Conditions.timestamp(at))
            }
            await announce(
                object, type: "Warning", reason: "Failed",
                note: "Issuance failed (attempt \(failures), next in \(Int(delay.timeInterval)) s): \(error)")
            metrics.recordIssuance(succeeded: false)
            logger.warning(
                "issuance failed", metadata: ["certificate": "\(key)", "attempts": "\(failures)", "error": "\(error)"])
            return Requeue(after: delay, failed: true)
        }
    }

    /// Key (kept in a Secret of its own until the certificate is delivered), certificate (found in Signet's ledger if
    /// an interrupted attempt already got one for this key), the Secret, and the pending key's removal.
    private func performIssuance(
        _ key: Key, spec: CertificateSpec, secret: KubernetesObject?, roots: [Certificate], crl: [UInt8]?,
        deliveredSerial: String?, adopt: Bool,
        newKey: Bool
    ) async throws -> HeldCertificate {
        var keyPEM = ""
        var pendingKeySecret: String?
        var earlier: (record: Components.Schemas.CertificateRecord, chainPEM: String)?
        for _ in 0..<2 {
            // A revoked certificate's key is never reused, whatever the rotation policy says.
            if spec.rotationPolicy == .never, !newKey,
                let existing = secret?.data["tls.key"].flatMap({ String(bytes: $0, encoding: .utf8) }),
                let parsed = try? PrivateKeyPEM.read(existing), KeyAlgorithm.of(parsed.publicKey) == spec.keyAlgorithm
            {
                keyPEM = existing
            } else {
                (keyPEM, pendingKeySecret) = try await pendingKey(key, algorithm: spec.keyAlgorithm)
            }
            let fingerprint = try PrivateKeyPEM.read(keyPEM).publicKey.sha256Fingerprint
            earlier = try await issuer.issued(publicKeySHA256: fingerprint, namespace: key.namespace)
            // A pending key whose certificate was already delivered is left over from a finished issuance (its
            // removal failed): start again with a fresh key rather than hand out the old certificate once more.
            guard let found = earlier, found.record.serial == deliveredSerial, let stale = pendingKeySecret else {
                break
            }
            logger.info(
                "discarding a pending key left over from an earlier issuance", metadata: ["certificate": "\(key)"])
            try await client.delete(.secrets, namespace: key.namespace, name: stale)
            earlier = nil
        }
        let privateKey = try PrivateKeyPEM.read(keyPEM)

        let chainPEM: String
        if let earlier, Set(earlier.record.dnsNames + earlier.record.ipAddresses) == Reconciler.names(of: spec),
            earlier.record.notAfter > now(),
            earlier.record.serial != deliveredSerial
        {
            logger.info(
                "resuming an interrupted issuance with the certificate Signet already issued for its key",
                metadata: ["certificate": "\(key)", "serial": "\(earlier.record.serial)"])
            chainPEM = earlier.chainPEM
        } else {
            chainPEM = try await issuer.issue(
                csrPEM: try spec.keyAlgorithm.signingRequest(for: privateKey), dnsNames: spec.dnsNames,
                ipAddresses: spec.ipAddresses,
                duration: spec.duration, profile: spec.profile, namespace: key.namespace
            ).chain
        }
        let chain = try PEMFiles.certificates(in: chainPEM, source: "Signet's answer")
        guard let leaf = chain.first, let root = roots.last else {
            throw SignetClient.Failure(status: nil, description: "Signet's answer holds no certificate")
        }
        let held = HeldCertificate(
            serial: SerialNumbers.hex(leaf.serialNumber), notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter,
            renewalTime: Reconciler.renewalTime(of: leaf, spec: spec)
        )
        try await writeSecret(
            chain: chain, keyPEM: keyPEM, root: root, spec: spec, certificate: key, renewAfter: held.renewalTime,
            crl: crl, adopt: adopt)
        if let pendingKeySecret { await removePendingKey(pendingKeySecret, namespace: key.namespace) }
        return held
    }

    /// The key of the issuance in progress: read back from its Secret if an earlier attempt made one (of the right
    /// algorithm), else made now and stored before Signet is asked.
    private func pendingKey(_ key: Key, algorithm: KeyAlgorithm) async throws -> (pem: String, secret: String) {
        let name = String(key.name.prefix(240)) + "-next-key"
        var conflict: (any Error)?
        for _ in 0..<5 {
            do {
                if let existing = try await client.getSecret(namespace: key.namespace, name: name) {
                    guard existing.annotations[Self.nextKeyAnnotation] == key.name else {
                        throw SignetClient.Failure(
                            status: nil,
                            description:
                                "Secret \(key.namespace)/\(name) exists and is not this Certificate's pending key")
                    }
                    if let pem = existing.data["tls.key"].flatMap({ String(bytes: $0, encoding: .utf8) }),
                        let parsed = try? PrivateKeyPEM.read(pem),
                        KeyAlgorithm.of(parsed.publicKey) == algorithm
                    {
                        return (pem, name)
                    }
                    try await client.delete(.secrets, namespace: key.namespace, name: name)
                }
                let (_, pem) = try algorithm.generate()
                var secret = KubernetesObject(
                    .object([
                        "apiVersion": .string("v1"), "kind": .string("Secret"), "type": .string("Opaque"),
                        "metadata": .object(["name": .string(name), "namespace": .string(key.namespace)]),
                    ]))
                secret.labels = [TLSSecret.managedByLabel: TLSSecret.managedByValue]
                secret.annotations = [Self.nextKeyAnnotation: key.name]
                secret.data = ["tls.key": Array(pem.utf8)]
                _ = try await client.createSecret(secret)
                await updateStatus(key) { status, _ in status["nextPrivateKeySecretName"] = .string(name) }
                return (pem, name)
            } catch let error as KubernetesError where error.code == 409 || error.code == 404 {
                // Created or deleted in between (another attempt, a conflict): read again.
                conflict = error
            }
        }
        throw conflict ?? SignetClient.Failure(status: nil, description: "the pending key could not be stored")
    }

    /// The delivered key's pending copy goes; a failure here is only logged (the next issuance notices a leftover).
    private func removePendingKey(_ name: String, namespace: String) async {
        for attempt in 1...5 {
            do {
                try await client.delete(.secrets, namespace: namespace, name: name)
                return
            } catch let error as KubernetesError where error.code == 404 {
                return
            } catch {
                if attempt == 5 {
                    logger.warning(
                        "cannot remove a pending key",
                        metadata: ["secret": "\(namespace)/\(name)", "error": "\(error)"])
                }
                try? await Task.sleep(for: .milliseconds(200 * attempt))
            }
        }
    }

    /// Template labels or annotations, or the chain's CRLs, changed: the Secret is rewritten with the certificate and key
    /// it holds.
    private func rewriteMetadata(
        _ secret: KubernetesObject, spec: CertificateSpec, certificate: Key, held: HeldCertificate, crl: [UInt8]?,
        adopt: Bool
    ) async throws {
        let data = secret.data
        guard let crt = data["tls.crt"].flatMap({ String(bytes: $0, encoding: .utf8) }),
            let keyPEM = data["tls.key"].flatMap({ String(bytes: $0, encoding: .utf8) }),
            let root = try await trustedRoots().last
        else { return }
        let chain = try PEMFiles.certificates(in: crt, source: "tls.crt")
        try await writeSecret(
            chain: chain, keyPEM: keyPEM, root: root, spec: spec, certificate: certificate,
            renewAfter: held.renewalTime, crl: crl,
            adopt: adopt)
    }

    /// The Istio-shaped Secret with the template's labels and annotations, the spec hash, the owning Certificate and
    /// `ca.crl` when it carries one.
    /// With `adopt`, an existing Secret Signet did not write is taken over, as cert-manager does; one that another
    /// Signet owner keeps never is.
    private func writeSecret(
        chain: [Certificate], keyPEM: String, root: Certificate, spec: CertificateSpec, certificate: Key,
        renewAfter: Date, crl: [UInt8]?, adopt: Bool
    ) async throws {
        var contents = TLSSecretContents(
            chain: chain, privateKeyPEM: keyPEM, root: root, issuer: "\(chain[0].issuer)", renewAfter: renewAfter)
        contents.templateLabels = spec.labels
        contents.templateAnnotations = spec.annotations.merging([
            Reconciler.specHashAnnotation: spec.issuanceHash, Self.certificateAnnotation: certificate.name,
        ]) { $1 }
        contents.owner = Self.owner(certificate)
        if let crl { contents.outputs[TLSSecret.crlKey] = crl }
        try await SecretDelivery(client: client, logger: logger).deliver(
            contents, namespace: certificate.namespace, name: spec.secretName, adopt: adopt)
    }

    /// Keeps the status in step with the certificate held (after a restart, or a status edited by hand).
    private func recordHeld(_ key: Key, object: KubernetesObject, spec: CertificateSpec, held: HeldCertificate) async {
        await updateStatus(key) { status, generation in
            let at = self.now()
            Conditions.set(
                &status, type: "Ready", status: "True", reason: "Ready",
                message: "Certificate is up to date and has not expired", generation: generation, now: at)
            if Conditions.get(status, "Issuing") == nil
                || Conditions.get(status, "Issuing")?["status"]?.string == "True"
            {
                Conditions.set(
                    &status, type: "Issuing", status: "False", reason: "UpToDate", message: "No issuance needed",
                    generation: generation, now: at)
            }
            Self.write(held, into: &status)
        }
        metrics.observe(key.namespace, key.name, secret: spec.secretName, held: held, ready: true)
    }

    static func write(_ held: HeldCertificate, into status: inout JSONValue) {
        status["serial"] = .string(held.serial)
        status["notBefore"] = .string(Conditions.timestamp(held.notBefore))
        status["notAfter"] = .string(Conditions.timestamp(held.notAfter))
        status["renewalTime"] = .string(Conditions.timestamp(held.renewalTime))
    }

    /// Read-modify-write of `.status` through the status subresource; a conflict re-reads and re-applies.
    private func updateStatus(_ key: Key, _ change: @escaping @Sendable (inout JSONValue, Int) -> Void) async {
        do {
            try await client.updateStatus(.certificates, namespace: key.namespace, name: key.name, change)
        } catch {
            logger.warning(
                "cannot update a Certificate's status", metadata: ["certificate": "\(key)", "error": "\(error)"])
        }
    }

    private func announce(_ object: KubernetesObject, type: String, reason: String, note: String) async {
        do {
            try await client.recordEvent(
                regarding: object, type: type, reason: reason, action: "Issue", note: note,
                controller: "signet.dev/controller")
        } catch {
            logger.debug("could not record an Event", metadata: ["error": "\(error)"])
        }
    }

    private func trustedRoots() async throws -> [Certificate] {
        try await issuer.caChain()
    }

    private func until(_ date: Date) -> Duration {
        .milliseconds(Int64(max(0, date.timeIntervalSince(now())) * 1000) + 50)
    }
}
