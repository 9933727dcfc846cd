import X509

/// What an issued certificate may be used for: its extended key usages.
public enum CertificateProfile: String, CaseIterable, Hashable, Sendable, Codable {
    /// A TLS server, such as an Istio ingress gateway.
    case server
    /// A TLS client presenting a certificate to a mutual-TLS server.
    case client
    /// Both, for workloads that accept and make mutual-TLS connections.
    case serverClient = "server-client"

    public func extendedKeyUsage() throws -> ExtendedKeyUsage {
        switch self {
        case .server: try ExtendedKeyUsage([.serverAuth])
        case .client: try ExtendedKeyUsage([.clientAuth])
        case .serverClient: try ExtendedKeyUsage([.serverAuth, .clientAuth])
        }
    }
}
