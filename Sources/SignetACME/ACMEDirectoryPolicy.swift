import SignetAuthority

/// One ACME directory (`/acme/{name}/directory`) and the policy its accounts order under: which names, which
/// challenges, lifetimes, profiles, whether accounts need an external binding, and which names are trusted without a
/// challenge. The registration authority's rules, apart from any I/O.
public struct ACMEDirectoryPolicy: Sendable, Equatable {
    public var name: String
    public var allowedNames: [NamePattern]
    public var challenges: [ChallengeType] = ChallengeType.allCases
    public var maximumLifetime: Duration = IssuancePolicy.standardDefaultLifetime
    public var defaultLifetime: Duration = IssuancePolicy.standardDefaultLifetime
    /// Offered as `meta.profiles`; the first is used when an order names none.
    public var profiles: [CertificateProfile] = [.server]
    public var externalAccountRequired = false
    /// Names authorized without a challenge (internal names no validator can reach). Off unless listed.
    public var trustedNames: [NamePattern] = []
    /// Every challenge passes without contacting anything: for benchmarks and client tests only, like Pebble's
    /// `PEBBLE_VA_ALWAYS_VALID`. Signet warns at start when a directory has it.
    public var alwaysValid = false
    public var website: String?
    public var termsOfService: String?
    public var caaIdentities: [String] = []

    public init(name: String, allowedNames: [NamePattern]) {
        self.name = name
        self.allowedNames = allowedNames
    }

    /// Refuses identifiers outside the directory's names or the account's own (an EAB key's), and identifiers no
    /// offered challenge can validate, with one subproblem per identifier (RFC 8555 §6.7.1).
    public func check(_ identifiers: [ACMEIdentifier], accountNames: [NamePattern]) throws(ACMEError) {
        var problems: [ACMEError] = []
        for identifier in identifiers {
            if !allows(identifier, in: allowedNames) {
                problems.append(
                    ACMEError(
                        .rejectedIdentifier, "'\(identifier.value)' is not allowed by ACME directory '\(name)'",
                        identifier: identifier))
            } else if !accountNames.isEmpty, !allows(identifier, in: accountNames) {
                problems.append(
                    ACMEError(
                        .rejectedIdentifier,
                        "'\(identifier.value)' is not allowed for this account's external account key",
                        identifier: identifier))
            } else if !isTrusted(identifier),
                challengeTypes(for: identifier.authorizationIdentifier, wildcard: identifier.isWildcard).isEmpty
            {
                let offered = challenges.map(\.rawValue).joined(separator: ", ")
                problems.append(
                    ACMEError(
                        .rejectedIdentifier,
                        identifier.isWildcard
                            ? "'\(identifier.value)' is a wildcard, which only dns-01 can validate, and directory '\(name)' offers \(offered)"
                            : "no challenge directory '\(name)' offers (\(offered)) can validate '\(identifier.value)'",
                        identifier: identifier))
            }
        }
        guard problems.isEmpty else {
            if problems.count == 1 { throw problems[0] }
            throw ACMEError(
                .rejectedIdentifier, "\(problems.count) identifiers of the order are refused", subproblems: problems)
        }
    }

    public func challengeTypes(for identifier: ACMEIdentifier, wildcard: Bool) -> [ChallengeType] {
        challenges.filter { $0.applies(to: identifier, wildcard: wildcard) }
    }

    public func isTrusted(_ identifier: ACMEIdentifier) -> Bool {
        allows(identifier, in: trustedNames)
    }

    private func allows(_ identifier: ACMEIdentifier, in patterns: [NamePattern]) -> Bool {
        switch identifier.type {
        case .dns: return patterns.contains { $0.allows(dnsName: identifier.value) }
        case .ip:
            guard let address = IPAddress(identifier.value) else { return false }
            return patterns.contains { $0.allows(ipAddress: address) }
        }
    }

    /// What each offered profile means, for `meta.profiles` (cert-manager reads it as name → string).
    public var profileDescriptions: [String: String] {
        Dictionary(
            uniqueKeysWithValues: profiles.map { profile in
                let description =
                    switch profile {
                    case .server: "TLS server certificates (serverAuth)"
                    case .client: "TLS client certificates (clientAuth)"
                    case .serverClient: "TLS server and client certificates (serverAuth, clientAuth)"
                    // never offered: the configuration refuses it
                    case .ocspSigning: "OCSP responder certificates (OCSPSigning)"
                    }
                return (profile.rawValue, description)
            })
    }
}
