import Logging
import ServiceLifecycle
import SignetAuthority
import SignetDelivery
import SignetKubernetes
import SignetLedger
import SignetManaged

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Watches the Secrets Signet delivers, one watch per (cluster, namespace) that managed certificates target. A
/// Secret deleted, or found holding a certificate Signet did not deliver, makes its managed certificate due at once,
/// so a gateway is never left without its certificate until the next scheduled renewal.
///
/// With several replicas, one watches each cluster: the one holding the cluster's lease in the ledger, renewed every
/// `refresh` and taken over by another replica once it lapses (the holder died or lost the database).
public struct DeliveredSecretWatch: Service {
    struct Scope: Hashable {
        let cluster: String
        let namespace: String
    }

    let ledger: any ManagedCertificateStore & LeaseStore
    let clusters: ClusterConnections
    let logger: Logger
    /// How often the set of watched namespaces is brought up to date with the registered certificates, and the
    /// clusters' leases renewed.
    let refresh: Duration
    /// How long a cluster's lease lasts without renewal: three refreshes.
    var leaseLifetime: Duration { refresh * 3 }
    /// This replica, as the leases name their holder.
    let replica: String

    public init(
        ledger: any ManagedCertificateStore & LeaseStore, clusters: ClusterConnections, logger: Logger,
        refresh: Duration = .seconds(5), replica: String = ReplicaName.current
    ) {
        self.ledger = ledger
        self.clusters = clusters
        self.logger = logger
        self.refresh = refresh
        self.replica = replica
    }

    static func leaseName(_ cluster: String) -> String { "secret-watch:\(cluster)" }

    public func run() async {
        // One task per watched namespace, started and cancelled as managed certificates come and go and as this
        // replica gains or loses a cluster's lease (a task group cannot cancel one child); all are cancelled, and the
        // leases given up, when the service stops.
        var watches: [Scope: Task<Void, Never>] = [:]
        var held = Set<String>()
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                let wanted = Set(
                    try await ledger.managedTargetNamespaces().map {
                        Scope(cluster: $0.cluster, namespace: $0.namespace)
                    })
                held = await renewLeases(for: Set(wanted.map(\.cluster)), held: held)
                for scope in wanted where watches[scope] == nil && held.contains(scope.cluster) {
                    guard let client = clusters[scope.cluster]?.client else { continue }
                    watches[scope] = Task { await watch(scope, client: client) }
                }
                for (scope, task) in watches where !wanted.contains(scope) || !held.contains(scope.cluster) {
                    task.cancel()
                    watches[scope] = nil
                }
            } catch {
                logger.error("cannot read managed certificates' targets", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: refresh) }
        }
        for task in watches.values { task.cancel() }
        for cluster in held { try? await ledger.releaseLease(Self.leaseName(cluster), holder: replica) }
    }

    /// Takes or keeps the lease of every cluster in `wanted`, gives up the others; returns the clusters held now. A
    /// lease that cannot be renewed (no database) is kept as it was: it lapses by itself if this lasts.
    private func renewLeases(for wanted: Set<String>, held: Set<String>) async -> Set<String> {
        var now = held
        for cluster in wanted.union(held) {
            let name = Self.leaseName(cluster)
            guard wanted.contains(cluster) else {
                try? await ledger.releaseLease(name, holder: replica)
                now.remove(cluster)
                continue
            }
            let start = Date()
            do {
                let holds = try await ledger.acquireLease(
                    name, holder: replica, until: start.addingTimeInterval(leaseLifetime.timeInterval), now: start)
                if holds, !held.contains(cluster) {
                    logger.info(
                        "watching the cluster's delivered Secrets: this replica holds its lease",
                        metadata: ["cluster": "\(cluster)", "replica": "\(replica)"])
                } else if !holds, held.contains(cluster) {
                    logger.warning(
                        "another replica took the lease of the cluster's Secret watch",
                        metadata: ["cluster": "\(cluster)", "replica": "\(replica)"])
                }
                if holds { now.insert(cluster) } else { now.remove(cluster) }
            } catch {
                logger.warning(
                    "cannot renew the lease of the cluster's Secret watch",
                    metadata: ["cluster": "\(cluster)", "error": "\(error)"])
            }
        }
        return now
    }

    /// The Secrets Signet labelled, relisted and watched by the client's informer loop.
    private func watch(_ scope: Scope, client: KubernetesClient) async {
        await client.follow(
            .secrets, namespace: scope.namespace,
            labelSelector: "\(TLSSecret.managedByLabel)=\(TLSSecret.managedByValue)"
        ) { observed in
            switch observed {
            case .listed(let items): try await reconcile(scope, present: items)
            case .changed(let secret): try await inspect(scope, secret: secret, deleted: false)
            case .deleted(let secret): try await inspect(scope, secret: secret, deleted: true)
            }
        }
    }

    /// After a (re)list: every delivered Secret of the scope must be present and hold what was delivered.
    private func reconcile(_ scope: Scope, present: [KubernetesObject]) async throws {
        let byName = Dictionary(present.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for record in try await ledger.managedCertificates(cluster: scope.cluster, namespace: scope.namespace) {
            try await check(record, secret: byName[record.spec.target.secretName])
        }
    }

    private func inspect(_ scope: Scope, secret: KubernetesObject, deleted: Bool) async throws {
        let records = try await ledger.managedCertificates(
            cluster: scope.cluster, namespace: scope.namespace, secretName: secret.name)
        for record in records {
            try await check(record, secret: deleted ? nil : secret)
        }
    }

    /// Schedules a re-delivery when the Secret is gone or holds another serial. A renewal in progress (a pending
    /// key) is left alone: the Secret it is writing is newer than the ledger's record until it completes.
    private func check(_ record: ManagedCertificateRecord, secret: KubernetesObject?) async throws {
        guard let delivered = record.delivered, record.pendingKey == nil, record.nextAttemptAt > Date() else { return }
        let found = secret?.annotations[TLSSecret.serialAnnotation]
        guard found != delivered.serial else { return }
        let reason =
            secret == nil
            ? "Secret \(record.spec.target) is gone"
            : "Secret \(record.spec.target) holds serial \(found ?? "none"), not the delivered \(delivered.serial)"
        logger.warning(
            "a delivered Secret changed; delivering again", metadata: ["name": "\(record.name)", "reason": "\(reason)"])
        try await ledger.scheduleManagedCertificate(
            name: record.name, at: Date(),
            event: AuditEvent(
                at: Date(), actor: "signet", action: "managed.redeliver", outcome: .success, subject: record.name,
                reason: reason
            ))
    }
}
