import Foundation
import SignetAuthority
import SignetDelivery
import SignetManaged
import X509

/// One renewal as the engine sees it, whoever asked for it (a managed certificate in the ledger, a Certificate
/// resource in a cluster): the names, the key, the Secret and what goes into it.
public struct RenewalJob: Sendable {
    /// The names the certificate is for, canonical (`IssuanceRules.names`): a certificate an interrupted attempt got
    /// for the same key is handed out only if it is for exactly these.
    public var names: Set<String>
    public var keyAlgorithm: KeyAlgorithm
    /// A key to keep instead of a new one (cert-manager's `rotationPolicy: Never`), if it is of `keyAlgorithm`.
    public var keptKeyPEM: String?
    /// Where the certificate goes.
    public var namespace: String
    public var secretName: String
    /// Who keeps the Secret (`TLSSecret.ownerAnnotation`), and whether a Secret Signet did not write may be taken over.
    public var owner: String
    public var adopt: Bool
    /// The serial the Secret holds now, if any: never handed out again as if it were new.
    public var deliveredSerial: String?
    /// The Secret's labels, annotations and extra outputs besides the certificate and key.
    public var template: SecretTemplate
    /// The root the chain leads to: `ca.crt`.
    public var root: Certificate
    /// When the certificate the engine delivers is to be renewed; an earlier certificate past it is not worth resuming.
    public var renewalTime: @Sendable (Certificate) -> Date

    public init(
        names: Set<String>, keyAlgorithm: KeyAlgorithm, keptKeyPEM: String? = nil, namespace: String,
        secretName: String, owner: String, adopt: Bool, deliveredSerial: String?, template: SecretTemplate,
        root: Certificate, renewalTime: @escaping @Sendable (Certificate) -> Date
    ) {
        self.names = names
        self.keyAlgorithm = keyAlgorithm
        self.keptKeyPEM = keptKeyPEM
        self.namespace = namespace
        self.secretName = secretName
        self.owner = owner
        self.adopt = adopt
        self.deliveredSerial = deliveredSerial
        self.template = template
        self.root = root
        self.renewalTime = renewalTime
    }
}

/// What a Secret carries besides `tls.crt`, `tls.key` and `ca.crt`.
public struct SecretTemplate: Sendable {
    public var labels: [String: String]
    public var annotations: [String: String]
    /// cert-manager's `additionalOutputFormats`, and the PKCS#12 password that adds the keystores.
    public var outputFormats: [OutputFormat]
    public var pkcs12Password: String?
    /// `ca.crl`, when the Secret carries the chain's CRLs.
    public var caCRL: [UInt8]?

    public init(
        labels: [String: String] = [:], annotations: [String: String] = [:], outputFormats: [OutputFormat] = [],
        pkcs12Password: String? = nil, caCRL: [UInt8]? = nil
    ) {
        self.labels = labels
        self.annotations = annotations
        self.outputFormats = outputFormats
        self.pkcs12Password = pkcs12Password
        self.caCRL = caCRL
    }
}

/// A renewal that finished: the Secret holds this certificate.
public struct CompletedRenewal: Sendable, Equatable {
    public var serial: String
    public var notBefore: Date
    public var notAfter: Date
    public var renewalTime: Date
    /// The Secret's resourceVersion after the write.
    public var secretResourceVersion: String?
    /// The certificate was one an interrupted attempt had already got for this key (nothing was signed this time).
    public var resumed: Bool
    /// The key was a pending one (not one kept from the Secret), so the state store may let it go.
    public var usedPendingKey: Bool
    public var deliveredAt: Date
}

extension RenewalJob {
    /// Names as Signet records them (lower-case hosts, parsed addresses); names Signet would refuse match nothing.
    public static func canonicalNames(dnsNames: [String], ipAddresses: [String]) -> Set<String> {
        (try? IssuanceRules.names(dnsNames: dnsNames, ipAddresses: ipAddresses)).map { Set($0.all) } ?? []
    }
}
