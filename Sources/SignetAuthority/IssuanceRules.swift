import SwiftASN1
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Everything decided about a certificate before it is built: the one thing the signing step needs.
public struct IssuancePlan: Sendable {
    public let request: InspectedRequest
    public let names: RequestedNames
    public let subject: DistinguishedName
    public let profile: CertificateProfile
    public let lifetime: Duration
}

/// The rules that turn a request into a plan or a refusal. Pure: no clock, no I/O, no key.
public enum IssuanceRules {
    /// RFC 5280's upper bound for a commonName; longer names stay in the subjectAltName only.
    static let commonNameLimit = 64

    /// Checks `request` against the CSR rules, name syntax and `policy`, in that order, so that a malformed
    /// request is told what is malformed before it is told what it may not have.
    ///
    /// - Parameter issuerNotAfter: the issuing CA's expiry; a certificate may not outlive it.
    public static func plan(
        _ request: IssuanceRequest,
        policy: IssuancePolicy,
        now: Date,
        issuerNotAfter: Date
    ) throws(IssuanceRefusal) -> IssuancePlan {
        let inspected: InspectedRequest
        do {
            inspected = try InspectedRequest(pem: request.csrPEM)
        } catch {
            throw .request(error)
        }
        let names = try names(of: inspected, body: request)
        if let commonName = inspected.commonName {
            let canonical = commonName.lowercased()
            let matchesIP = IPAddress(commonName).map { names.ipAddresses.contains($0) } ?? false
            guard names.dnsNames.contains(canonical) || matchesIP else {
                throw .commonNameNotAmongNames(commonName)
            }
        }

        let profile = request.profile ?? .server
        guard policy.allowedProfiles.contains(profile) else {
            throw .policy(
                .profileNotAllowed(
                    profile, allowed: CertificateProfile.requestable.filter(policy.allowedProfiles.contains)))
        }

        let lifetime: Duration
        if let text = request.duration {
            do {
                lifetime = try Lifetime.parse(text)
            } catch {
                throw .lifetime(error)
            }
        } else {
            lifetime = policy.defaultLifetime
        }
        try check(lifetime, policy: policy, now: now, issuerNotAfter: issuerNotAfter)

        let outside = policy.namesOutsidePolicy(names)
        guard outside.isEmpty else { throw .policy(.namesNotAllowed(outside)) }

        return IssuancePlan(
            request: inspected,
            names: names,
            subject: subject(commonName: inspected.commonName, names: names),
            profile: profile,
            lifetime: lifetime
        )
    }

    /// The certificate's names: the CSR's and/or the body's, validated and canonical. When both are given they
    /// must be the same set, so nobody is surprised by a certificate for names they did not list.
    /// The most names one certificate may carry (dnsNames, ipAddresses and URIs together; `maxItems` in api/openapi.yaml).
    /// Past this, a request is a resource problem, not a certificate.
    public static let maximumNames = 100

    static func names(of request: InspectedRequest, body: IssuanceRequest) throws(IssuanceRefusal) -> RequestedNames {
        let listed = (body.dnsNames?.count ?? 0) + (body.ipAddresses?.count ?? 0) + request.requestedURIs.count
        let inCSR = request.requestedDNSNames.count + request.requestedIPAddresses.count + request.requestedURIs.count
        guard max(listed, inCSR) <= maximumNames else { throw .tooManyNames(max(listed, inCSR), maximum: maximumNames) }
        var errors: [NameError] = []
        let csrDNS = canonical(dnsNames: request.requestedDNSNames, ipAddresses: [], errors: &errors).dnsNames
        let bodyNames = canonical(dnsNames: body.dnsNames ?? [], ipAddresses: body.ipAddresses ?? [], errors: &errors)
        let bodyIPs = bodyNames.ipAddresses
        // URIs come from the CSR alone (the request body has no field for them), validated here.
        var uris: [String] = []
        for text in request.requestedURIs {
            do {
                let uri = try URIRules.validate(text)
                if !uris.contains(uri) { uris.append(uri) }
            } catch {
                errors.append(error)
            }
        }
        guard errors.isEmpty else { throw .invalidNames(errors) }

        var csrIPs: [IPAddress] = []
        for address in request.requestedIPAddresses where !csrIPs.contains(address) { csrIPs.append(address) }
        let csrNames = RequestedNames(dnsNames: csrDNS, ipAddresses: csrIPs, uris: uris)

        var chosen: RequestedNames
        switch (csrNames.isEmpty, bodyNames.isEmpty) {
        case (true, true):
            throw .noNames
        case (false, true):
            chosen = csrNames
        case (true, false):
            chosen = bodyNames
        case (false, false):
            guard Set(csrNames.dnsNames) == Set(bodyNames.dnsNames), Set(csrIPs) == Set(bodyIPs) else {
                throw .namesDisagree(csr: csrNames.all, body: bodyNames.all)
            }
            chosen = bodyNames
            chosen.uris = uris
        }
        return chosen
    }

    /// Within the policy's bounds and the issuer's own validity.
    public static func check(_ lifetime: Duration, policy: IssuancePolicy, now: Date, issuerNotAfter: Date)
        throws(IssuanceRefusal)
    {
        guard lifetime <= policy.maximumLifetime else {
            throw .policy(.lifetimeTooLong(requested: lifetime, maximum: policy.maximumLifetime))
        }
        guard lifetime >= IssuancePolicy.minimumLifetime else {
            throw .policy(.lifetimeTooShort(requested: lifetime, minimum: IssuancePolicy.minimumLifetime))
        }
        guard now.addingTimeInterval(TimeInterval(lifetime.components.seconds)) <= issuerNotAfter else {
            throw .policy(.lifetimeBeyondIssuer(issuerNotAfter.formatted(.iso8601)))
        }
    }

    /// Names given as lists (no CSR), validated and canonical, duplicates dropped: a managed certificate's names.
    public static func names(dnsNames: [String], ipAddresses: [String]) throws(IssuanceRefusal) -> RequestedNames {
        guard dnsNames.count + ipAddresses.count <= maximumNames else {
            throw .tooManyNames(dnsNames.count + ipAddresses.count, maximum: maximumNames)
        }
        var errors: [NameError] = []
        let names = canonical(dnsNames: dnsNames, ipAddresses: ipAddresses, errors: &errors)
        guard errors.isEmpty else { throw .invalidNames(errors) }
        guard !names.isEmpty else { throw .noNames }
        return names
    }

    /// Lower-cased, validated DNS names and parsed addresses, in order, without duplicates; every bad entry is
    /// added to `errors` so that one answer names them all.
    private static func canonical(dnsNames: [String], ipAddresses: [String], errors: inout [NameError])
        -> RequestedNames
    {
        var result = RequestedNames()
        for name in dnsNames {
            if IPAddress(name) != nil {
                errors.append(.ipAddressInDNSNames(name))
                continue
            }
            do {
                let canonical = try HostnameRules.validate(name)
                if !result.dnsNames.contains(canonical) { result.dnsNames.append(canonical) }
            } catch {
                errors.append(error)
            }
        }
        for text in ipAddresses {
            guard let address = IPAddress(text) else {
                errors.append(.invalidIPAddress(text))
                continue
            }
            if !result.ipAddresses.contains(address) { result.ipAddresses.append(address) }
        }
        return result
    }

    static func subject(commonName: String?, names: RequestedNames) -> DistinguishedName {
        let candidate = commonName?.lowercased() ?? names.dnsNames.first ?? names.ipAddresses.first?.description
        guard let candidate, candidate.utf8.count <= commonNameLimit else { return DistinguishedName() }
        return DistinguishedName([
            RelativeDistinguishedName(.init(type: .RDNAttributeType.commonName, utf8String: candidate))
        ])
    }
}
