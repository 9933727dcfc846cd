import SignetACME
import SignetAuthority
import SignetKeys
import SignetKubernetes
import SignetLedger
import Yams

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A cluster managed certificates are delivered to: a kubeconfig (and context), or the cluster Signet runs in.
public struct ClusterSettings: Sendable, Equatable {
    public var name: String
    /// nil: in-cluster (service-account token and CA).
    public var kubeconfig: String?
    public var context: String?
    /// `host:port` of the cluster's ingress gateway: after each delivery Signet connects there with SNI set to the
    /// certificate's first name and records whether the new serial is served.
    public var gateway: String?
    /// Accept a plain-HTTP API server (a local test cluster); refused otherwise.
    public var allowPlainHTTP = false

    public init(name: String, kubeconfig: String?, context: String? = nil, gateway: String? = nil) {
        self.name = name
        self.kubeconfig = kubeconfig
        self.context = context
        self.gateway = gateway
    }
}

public enum HostPort {
    /// `host:port` or `[v6]:port`; `:port` too when a `wildcardHost` stands in for "every interface".
    public static func split(_ text: String, wildcardHost: String? = nil, allowingPortZero: Bool = false) -> (
        host: String, port: Int
    )? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            ((allowingPortZero ? 0 : 1)...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let chosen = host.isEmpty ? wildcardHost : host else { return nil }
        return (chosen, port)
    }

    static func validate(_ text: String, _ key: String) throws {
        guard split(text) != nil else { throw ConfigurationError("\(key): '\(text)' is not host:port") }
    }
}
