import Logging
import ServiceLifecycle
import SignetAuthority
import SignetDelivery
import SignetKubernetes
import SignetLedger

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Watches the Secrets Signet delivers, one watch per (cluster, namespace) that managed certificates target. A
/// Secret deleted, or found holding a certificate Signet did not deliver, makes its managed certificate due at once,
/// so a gateway is never left without its certificate until the next scheduled renewal.
public struct DeliveredSecretWatch: Service {
    struct Scope: Hashable {
        let cluster: String
        let namespace: String
    }

    let ledger: any ManagedCertificateStore
    let clusters: ClusterConnections
    let logger: Logger
    /// How often the set of watched namespaces is brought up to date with the registered certificates.
    let refresh: Duration

    public init(
        ledger: any ManagedCertificateStore, clusters: ClusterConnections, logger: Logger,
        refresh: Duration = .seconds(5)
    ) {
        self.ledger = ledger
        self.clusters = clusters
        self.logger = logger
        self.refresh = refresh
    }

    public func run() async {
        // One task per watched namespace, started and cancelled as managed certificates come and go (a task group
        // cannot cancel one child); all are cancelled when the service stops.
        var watches: [Scope: Task<Void, Never>] = [:]
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                let wanted = Set(
                    try await ledger.managedTargetNamespaces().map {
                        Scope(cluster: $0.cluster, namespace: $0.namespace)
                    })
                for scope in wanted where watches[scope] == nil {
                    guard let client = clusters[scope.cluster]?.client else { continue }
                    watches[scope] = Task { await watch(scope, client: client) }
                }
                for (scope, task) in watches where !wanted.contains(scope) {
                    task.cancel()
                    watches[scope] = nil
                }
            } catch {
                logger.error("cannot read managed certificates' targets", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: refresh) }
        }
        for task in watches.values { task.cancel() }
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
