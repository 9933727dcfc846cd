/// What one caller may be issued: which names, which profiles, for how long.
public struct IssuancePolicy: Hashable, Sendable {
    public var allowedNames: [NamePattern]
    public var allowedProfiles: Set<CertificateProfile>
    public var maximumLifetime: Duration
    public var defaultLifetime: Duration
    /// Where this caller may have managed certificates delivered; empty means nowhere.
    public var allowedTargets: [TargetPattern]

    public static let standardDefaultLifetime: Duration = .seconds(90 * 86_400)
    /// Shorter certificates than this are refused: clocks drift, and renewal needs room to work.
    public static let minimumLifetime: Duration = .seconds(60)

    public init(
        allowedNames: [NamePattern],
        allowedProfiles: Set<CertificateProfile> = Set(CertificateProfile.requestable),
        maximumLifetime: Duration = standardDefaultLifetime,
        defaultLifetime: Duration = standardDefaultLifetime,
        allowedTargets: [TargetPattern] = []
    ) {
        self.allowedTargets = allowedTargets
        self.allowedNames = allowedNames
        self.allowedProfiles = allowedProfiles
        self.maximumLifetime = maximumLifetime
        self.defaultLifetime = min(defaultLifetime, maximumLifetime)
    }

    public func allows(_ target: DeliveryTarget) -> Bool {
        allowedTargets.contains { $0.allows(target) }
    }

    /// Every requested name no pattern allows, in request order.
    public func namesOutsidePolicy(_ names: RequestedNames) -> [String] {
        let dns = names.dnsNames.filter { name in !allowedNames.contains { $0.allows(dnsName: name) } }
        let ips = names.ipAddresses.filter { address in !allowedNames.contains { $0.allows(ipAddress: address) } }
        let uris = names.uris.filter { uri in !allowedNames.contains { $0.allows(uri: uri) } }
        return dns + ips.map(\.description) + uris
    }
}

/// A refusal by policy, or a policy that cannot be built.
public enum PolicyError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidPattern(String, String)
    case namesNotAllowed([String])
    case profileNotAllowed(CertificateProfile, allowed: [CertificateProfile])
    case lifetimeTooLong(requested: Duration, maximum: Duration)
    case lifetimeTooShort(requested: Duration, minimum: Duration)
    case lifetimeBeyondIssuer(String)
    /// The certificate's subject is a configured client-certificate identity.
    case identityReserved(String)

    public var description: String {
        switch self {
        case let .invalidPattern(pattern, reason):
            "name pattern '\(pattern)' \(reason)"
        case let .namesNotAllowed(names):
            "not allowed for this caller: " + names.map { "'\($0)'" }.joined(separator: ", ")
        case let .profileNotAllowed(profile, allowed):
            "profile '\(profile.rawValue)' is not allowed for this caller; allowed: "
                + allowed.map(\.rawValue).joined(separator: ", ")
        case let .lifetimeTooLong(requested, maximum):
            "duration \(Lifetime.format(requested)) exceeds the maximum of \(Lifetime.format(maximum))"
        case let .lifetimeTooShort(requested, minimum):
            "duration \(Lifetime.format(requested)) is shorter than the minimum of \(Lifetime.format(minimum))"
        case let .lifetimeBeyondIssuer(notAfter):
            "the certificate would outlive the issuing CA, whose certificate expires at \(notAfter); request a shorter duration"
        case .identityReserved(let subject):
            "subject '\(subject)' is a client-certificate identity of this server (clientCertificates); Signet issues it to nobody"
        }
    }
}
