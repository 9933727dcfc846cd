import SignetAuthority

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Why a managed certificate is not accepted.
public enum ManagedCertificateRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    /// Names, profile or lifetime: the same refusals as a CSR's.
    case issuance(IssuanceRefusal)
    case invalid(String)
    case targetNotAllowed(DeliveryTarget)

    public var description: String {
        switch self {
        case .issuance(let refusal): refusal.description
        case .invalid(let what): what
        case .targetNotAllowed(let target):
            "delivering to \(target) (cluster/namespace/secret) is not allowed for this caller"
        }
    }
}

public enum ManagedCertificateRules {
    /// Label and annotation keys Signet writes itself; a template may not set them.
    public static let reservedKeyPrefixes = ["signet.dev/", "app.kubernetes.io/managed-by"]

    /// Checks a spec against the caller's policy and Signet's rules, and returns it canonical (names lower-cased,
    /// deduplicated). Names, target and timing are all checked before anything is stored; `clusters` are the
    /// cluster names configured on the server.
    public static func validate(
        name: String, _ spec: ManagedCertificateSpec, policy: IssuancePolicy, clusters: [String], now: Date,
        issuerNotAfter: Date
    ) throws(ManagedCertificateRefusal) -> ManagedCertificateSpec {
        guard KubernetesNames.isSubdomain(name) else {
            throw .invalid("name '\(name)' is not valid: lower-case letters, digits, '-' and '.', at most 253")
        }
        var canonical = spec
        let names: RequestedNames
        do {
            names = try IssuanceRules.names(dnsNames: spec.dnsNames, ipAddresses: spec.ipAddresses)
        } catch {
            throw .issuance(error)
        }
        canonical.dnsNames = names.dnsNames
        canonical.ipAddresses = names.ipAddresses.map(\.description)
        let outside = policy.namesOutsidePolicy(names)
        guard outside.isEmpty else { throw .issuance(.policy(.namesNotAllowed(outside))) }
        guard policy.allowedProfiles.contains(spec.profile) else {
            throw .issuance(
                .policy(
                    .profileNotAllowed(
                        spec.profile, allowed: CertificateProfile.requestable.filter(policy.allowedProfiles.contains))))
        }
        do {
            try IssuanceRules.check(spec.lifetime, policy: policy, now: now, issuerNotAfter: issuerNotAfter)
        } catch {
            throw .issuance(error)
        }
        try checkRenewal(spec)
        do {
            try spec.target.validate()
        } catch {
            throw .invalid(error.description)
        }
        guard clusters.contains(spec.target.cluster) else {
            let known =
                clusters.isEmpty
                ? "none are configured (clusters in signet.yaml)" : "configured: " + clusters.joined(separator: ", ")
            throw .invalid("unknown cluster '\(spec.target.cluster)'; \(known)")
        }
        guard policy.allows(spec.target) else { throw .targetNotAllowed(spec.target) }
        try checkTemplate(labels: spec.secretLabels, annotations: spec.secretAnnotations)
        if let reference = spec.pkcs12Password {
            guard KubernetesNames.isSubdomain(reference.name) else {
                throw .invalid("pkcs12 passwordSecretRef name '\(reference.name)' is not a valid Secret name")
            }
            guard isDataKey(reference.key) else {
                throw .invalid("pkcs12 passwordSecretRef key '\(reference.key)' is not a valid Secret data key")
            }
            guard reference.name != spec.target.secretName else {
                throw .invalid("the PKCS#12 password must live in another Secret than the one delivered")
            }
        }
        return canonical
    }

    /// Whether `policy` covers a stored spec's names and target (who may read, change or delete it); nil if it does.
    public static func coverageRefusal(_ spec: ManagedCertificateSpec, policy: IssuancePolicy)
        -> ManagedCertificateRefusal?
    {
        let names = RequestedNames(dnsNames: spec.dnsNames, ipAddresses: spec.ipAddresses.compactMap(IPAddress.init))
        let outside = policy.namesOutsidePolicy(names)
        if !outside.isEmpty { return .issuance(.policy(.namesNotAllowed(outside))) }
        if !policy.allows(spec.target) { return .targetNotAllowed(spec.target) }
        return nil
    }

    /// What `policy` refuses of a stored spec: its names, target, profile or lifetime, the parts a credential decides
    /// (whether a renewal may go on under its owner's policy as it is now); nil if it allows all of them.
    public static func policyRefusal(_ spec: ManagedCertificateSpec, policy: IssuancePolicy)
        -> ManagedCertificateRefusal?
    {
        if let refusal = coverageRefusal(spec, policy: policy) { return refusal }
        guard policy.allowedProfiles.contains(spec.profile) else {
            return .issuance(
                .policy(
                    .profileNotAllowed(
                        spec.profile, allowed: CertificateProfile.requestable.filter(policy.allowedProfiles.contains))))
        }
        guard spec.lifetime <= policy.maximumLifetime else {
            return .issuance(.policy(.lifetimeTooLong(requested: spec.lifetime, maximum: policy.maximumLifetime)))
        }
        return nil
    }

    static func checkRenewal(_ spec: ManagedCertificateSpec) throws(ManagedCertificateRefusal) {
        switch (spec.renewBeforeSeconds, spec.renewBeforePercentage) {
        case (.some, .some):
            throw .invalid("give renewBefore or renewBeforePercentage, not both")
        case (.some(let seconds), nil):
            guard seconds >= RenewalSchedule.minimumRenewBefore, seconds < spec.durationSeconds else {
                throw .invalid(
                    "renewBefore \(Lifetime.format(.seconds(seconds))) must be at least \(RenewalSchedule.minimumRenewBefore) seconds and shorter than the duration \(Lifetime.format(spec.lifetime))"
                )
            }
        case (nil, .some(let percentage)):
            guard (1...99).contains(percentage) else {
                throw .invalid("renewBeforePercentage \(percentage) must be between 1 and 99")
            }
        case (nil, nil):
            break
        }
    }

    static func checkTemplate(labels: [String: String], annotations: [String: String]) throws(ManagedCertificateRefusal)
    {
        for key in Array(labels.keys) + Array(annotations.keys) {
            guard isQualifiedName(key) else {
                throw .invalid("secretTemplate key '\(key)' is not a valid Kubernetes label/annotation key")
            }
            guard !reservedKeyPrefixes.contains(where: { key.hasPrefix($0) }) else {
                throw .invalid("secretTemplate key '\(key)' is Signet's own; it cannot be set by a template")
            }
        }
        for (key, value) in labels {
            let valid = value.isEmpty || (value.utf8.count <= 63 && isNamePart(value))
            guard valid else {
                throw .invalid("secretTemplate label '\(key)': value '\(value)' is not a valid label value")
            }
        }
    }

    /// A Secret's data key: `[-._a-zA-Z0-9]+`, at most 253.
    static func isDataKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.count <= 253
            && key.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }
    }

    /// `[prefix/]name`: a DNS subdomain prefix, a name of at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
    static func isQualifiedName(_ key: String) -> Bool {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        switch parts.count {
        case 1: return isNamePart(String(parts[0])) && parts[0].utf8.count <= 63
        case 2:
            return KubernetesNames.isSubdomain(String(parts[0])) && isNamePart(String(parts[1]))
                && parts[1].utf8.count <= 63
        default: return false
        }
    }

    private static func isNamePart(_ text: String) -> Bool {
        guard let first = text.first, let last = text.last, first.isASCII, last.isASCII,
            first.isLetter || first.isNumber, last.isLetter || last.isNumber
        else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }
}
