import Logging
import SignetKubernetes

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
