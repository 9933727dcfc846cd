import X509

/// What an issued certificate may be used for: its extended key usages.
public enum CertificateProfile: String, CaseIterable, Hashable, Sendable, Codable {
    /// A TLS server, such as an Istio ingress gateway.
    case server
    /// A TLS client presenting a certificate to a mutual-TLS server.
    case client
    /// Both, for workloads that accept and make mutual-TLS connections.
    case serverClient = "server-client"
    /// Signet's own delegated OCSP responder (RFC 6960 §4.2.2.2): made by Signet, recorded like any other
    /// certificate, never requested by anyone.
    case ocspSigning = "ocsp-signing"

    /// The profiles a caller, a policy or a token may name.
    public static let requestable: [CertificateProfile] = [.server, .client, .serverClient]

    /// A profile a caller may ask for, by name; nil for unknown names and for Signet's own `ocsp-signing`.
    public init?(requested name: String) {
        guard let profile = CertificateProfile(rawValue: name), Self.requestable.contains(profile) else { return nil }
        self = profile
    }

    public func extendedKeyUsage() throws -> ExtendedKeyUsage {
        switch self {
        case .server: try ExtendedKeyUsage([.serverAuth])
        case .client: try ExtendedKeyUsage([.clientAuth])
        case .serverClient: try ExtendedKeyUsage([.serverAuth, .clientAuth])
        case .ocspSigning: try ExtendedKeyUsage([.ocspSigning])
        }
    }
}
