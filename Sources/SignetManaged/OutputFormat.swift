/// cert-manager's `additionalOutputFormats`: extra keys in a certificate's Secret.
public enum OutputFormat: String, Codable, Hashable, Sendable, CaseIterable {
    /// `tls-combined.pem`: the private key, then the chain (for proxies that want one file).
    case combinedPEM = "CombinedPEM"
    /// `key.der`: the private key as PKCS#8 DER.
    case der = "DER"
}
