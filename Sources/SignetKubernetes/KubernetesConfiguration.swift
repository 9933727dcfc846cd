import Foundation
import Yams

/// Where a cluster's API server is and how to authenticate to it: from inside a pod (the service account) or from a
/// kubeconfig file (the subset platform teams use: server, CA, token or token file, client certificate; contexts).
public struct KubernetesConfiguration: Sendable, Equatable {
    public enum Credential: Sendable, Equatable {
        case none
        case token(String)
        /// Re-read as it rotates (projected service-account tokens are replaced by the kubelet).
        case tokenFile(String)
        case clientCertificate(certificatePEM: String, keyPEM: String)
    }

    public var server: String
    /// PEM bundle that verifies the API server; nil means the system roots.
    public var certificateAuthorityPEM: String?
    public var insecureSkipTLSVerify = false
    /// The name the API server's certificate is verified against (and sent as SNI) instead of the URL's host.
    public var tlsServerName: String?
    /// A plain-HTTP API server sends tokens and Secrets in the clear: refused unless explicitly allowed.
    public var allowPlainHTTP = false
    public var credential: Credential
    /// The namespace of the context (or the pod); where Secrets go when a target names none.
    public var namespace: String

    public init(server: String, certificateAuthorityPEM: String?, credential: Credential, namespace: String = "default")
    {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.credential = credential
        self.namespace = namespace
    }

    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The pod's own service account, as client-go's InClusterConfig reads it.
    public static func inCluster(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        directory: String = serviceAccountDirectory
    ) throws -> KubernetesConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        else {
            throw KubernetesError.configuration(
                "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
        }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let ca = try read(directory + "/ca.crt", what: "the service account's CA")
        let namespace =
            environment["POD_NAMESPACE"]
            ?? (try? String(contentsOfFile: directory + "/namespace", encoding: .utf8))?.trimmingCharacters(
                in: .whitespacesAndNewlines)
            ?? "default"
        return KubernetesConfiguration(
            server: "https://\(hostPart):\(port)", certificateAuthorityPEM: ca,
            credential: .tokenFile(directory + "/token"), namespace: namespace)
    }

    /// A kubeconfig file: its current context, or the one named.
    public static func kubeconfig(path: String, context requested: String? = nil) throws -> KubernetesConfiguration {
        let text = try read(path, what: "the kubeconfig")
        return try kubeconfig(
            yaml: text, context: requested, baseDirectory: (path as NSString).deletingLastPathComponent, source: path)
    }

    public static func kubeconfig(
        yaml text: String, context requested: String? = nil, baseDirectory: String, source: String = "kubeconfig"
    ) throws -> KubernetesConfiguration {
        guard let root = try? Yams.load(yaml: text) as? [String: Any] else {
            throw KubernetesError.configuration("\(source) is not a kubeconfig (YAML mapping expected)")
        }
        func named(_ list: String, _ name: String, _ field: String) throws -> [String: Any] {
            let entries = root[list] as? [[String: Any]] ?? []
            guard let entry = entries.first(where: { $0["name"] as? String == name }),
                let value = entry[field] as? [String: Any]
            else {
                throw KubernetesError.configuration(
                    "\(source): no \(field) named '\(name)' (\(list): \(entries.compactMap { $0["name"] as? String }.joined(separator: ", ")))"
                )
            }
            return value
        }
        guard let contextName = requested ?? root["current-context"] as? String, !contextName.isEmpty else {
            throw KubernetesError.configuration("\(source) has no current-context; name one")
        }
        let context = try named("contexts", contextName, "context")
        guard let clusterName = context["cluster"] as? String else {
            throw KubernetesError.configuration("\(source): context '\(contextName)' names no cluster")
        }
        let cluster = try named("clusters", clusterName, "cluster")
        let user = try (context["user"] as? String).map { try named("users", $0, "user") } ?? [:]

        func path(_ value: String) -> String { value.hasPrefix("/") ? value : baseDirectory + "/" + value }
        func pem(data: String, file: String, what: String) throws -> String? {
            if let encoded = cluster[data] as? String ?? user[data] as? String {
                guard let bytes = Data(base64Encoded: encoded.filter { !$0.isWhitespace }) else {
                    throw KubernetesError.configuration("\(source): \(data) is not base64")
                }
                return String(decoding: bytes, as: UTF8.self)
            }
            if let file = cluster[file] as? String ?? user[file] as? String { return try read(path(file), what: what) }
            return nil
        }

        guard let server = cluster["server"] as? String, server.hasPrefix("https://") || server.hasPrefix("http://")
        else {
            throw KubernetesError.configuration("\(source): cluster '\(clusterName)' has no https:// server")
        }
        if user["exec"] != nil || user["auth-provider"] != nil {
            throw KubernetesError.configuration(
                """
                \(source): user of context '\(contextName)' authenticates with \(user["exec"] != nil ? "an exec plugin" : "an auth-provider"), \
                which Signet does not run; supported: token, tokenFile, client-certificate(-data) with client-key(-data), \
                or in-cluster service-account tokens
                """)
        }
        if user["username"] != nil || user["password"] != nil {
            throw KubernetesError.configuration(
                "\(source): basic authentication (username/password) is not supported; use a token or a client certificate"
            )
        }
        let credential: Credential
        if let token = user["token"] as? String {
            credential = .token(token)
        } else if let file = user["tokenFile"] as? String {
            credential = .tokenFile(path(file))
        } else if let certificate = try pem(
            data: "client-certificate-data", file: "client-certificate", what: "the client certificate")
        {
            guard let key = try pem(data: "client-key-data", file: "client-key", what: "the client key") else {
                throw KubernetesError.configuration(
                    "\(source): a client certificate needs client-key or client-key-data")
            }
            credential = .clientCertificate(certificatePEM: certificate, keyPEM: key)
        } else {
            credential = .none
        }
        var configuration = KubernetesConfiguration(
            server: server,
            certificateAuthorityPEM: try pem(
                data: "certificate-authority-data", file: "certificate-authority", what: "the cluster CA"),
            credential: credential,
            namespace: context["namespace"] as? String ?? "default"
        )
        configuration.insecureSkipTLSVerify = cluster["insecure-skip-tls-verify"] as? Bool ?? false
        configuration.tlsServerName = cluster["tls-server-name"] as? String
        return configuration
    }

    /// A kubeconfig path if given, else `$KUBECONFIG` (its first file), else in-cluster, else `~/.kube/config`.
    public static func resolve(
        kubeconfig: String?, context: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> KubernetesConfiguration {
        if let kubeconfig { return try self.kubeconfig(path: kubeconfig, context: context) }
        if let paths = environment["KUBECONFIG"], let first = paths.split(separator: ":").first {
            return try self.kubeconfig(path: String(first), context: context)
        }
        if environment["KUBERNETES_SERVICE_HOST"] != nil { return try inCluster(environment: environment) }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return try self.kubeconfig(path: home + "/.kube/config", context: context)
    }

    private static func read(_ path: String, what: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw KubernetesError.configuration("cannot read \(what) at \(path)")
        }
    }
}
