import Foundation

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
