import SignetAuthority

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What a managed certificate should be, in canonical form: the names, key and lifetime of every certificate Signet
/// issues for it, when to renew, and the Secret it is delivered to. Stored as JSON in the ledger.
public struct ManagedCertificateSpec: Codable, Hashable, Sendable {
    public var dnsNames: [String]
    public var ipAddresses: [String]
    public var profile: CertificateProfile
    /// A fresh key of this kind for every certificate (stored by its raw value: `ecdsa-p256`, `rsa-2048`, …).
    public var keyAlgorithm: KeyAlgorithm
    public var durationSeconds: Int64
    /// At most one of the two; neither means the default, a third of the lifetime.
    public var renewBeforeSeconds: Int64?
    public var renewBeforePercentage: Int?
    public var target: DeliveryTarget
    public var secretLabels: [String: String]
    public var secretAnnotations: [String: String]
    /// Take over an existing kubernetes.io/tls Secret that Signet did not write.
    public var adopt: Bool
    /// Extra keys in the Secret, as cert-manager's additionalOutputFormats (nil: none).
    public var additionalOutputFormats: [OutputFormat]?
    /// Also write `keystore.p12` and `truststore.p12`, encrypted with the password in this Secret of the same namespace.
    public var pkcs12Password: SecretKeyReference?
    /// Write `ca.crl` (the chain's CRLs) into the Secret and keep it current; nil: for profiles with client
    /// authentication, whose certificates a MUTUAL gateway checks against it.
    public var caCRL: Bool?

    public var deliversCRL: Bool { caCRL ?? (profile != .server) }

    public init(
        dnsNames: [String], ipAddresses: [String] = [], profile: CertificateProfile = .server,
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        durationSeconds: Int64, renewBeforeSeconds: Int64? = nil, renewBeforePercentage: Int? = nil,
        target: DeliveryTarget,
        secretLabels: [String: String] = [:], secretAnnotations: [String: String] = [:], adopt: Bool = false
    ) {
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.profile = profile
        self.keyAlgorithm = keyAlgorithm
        self.durationSeconds = durationSeconds
        self.renewBeforeSeconds = renewBeforeSeconds
        self.renewBeforePercentage = renewBeforePercentage
        self.target = target
        self.secretLabels = secretLabels
        self.secretAnnotations = secretAnnotations
        self.adopt = adopt
    }

    public var lifetime: Duration { .seconds(durationSeconds) }
    public var renewBefore: Duration {
        RenewalSchedule.renewBefore(lifetime: lifetime, seconds: renewBeforeSeconds, percentage: renewBeforePercentage)
    }

    /// The policy a renewal is issued under: exactly these names, this profile, this lifetime. The caller's own
    /// policy was checked when the spec was accepted.
    public var renewalPolicy: IssuancePolicy {
        IssuancePolicy(
            allowedNames: dnsNames.compactMap { try? NamePattern($0) }
                + ipAddresses.compactMap { try? NamePattern($0) },
            allowedProfiles: [profile], maximumLifetime: lifetime, defaultLifetime: lifetime
        )
    }
}
