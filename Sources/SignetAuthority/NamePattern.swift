/// One entry of a caller's name policy.
///
/// The pattern language:
/// - `bookinfo.com` — exactly that name.
/// - `*.example.com` — any name exactly one label below `example.com` (`api.example.com`), and the wildcard
///   certificate name `*.example.com` itself, which covers the same set.
/// - `**.example.com` — any name one or more labels below `example.com` (`a.b.example.com`, `*.b.example.com`),
///   never `example.com` itself; list the apex separately if it is wanted.
/// - `10.1.2.3`, `2001:db8::1` — exactly that IP address; `10.0.0.0/8`, `2001:db8::/32` — any address in the network.
/// - `spiffe://cluster.local/ns/team-a/sa/web` — exactly that URI (a workload identity, as istio-csr asks for);
///   `spiffe://cluster.local/ns/team-a/sa/*` — any URI with one more path segment there.
///
/// Matching is case-insensitive, except in a URI's path. There are no other metacharacters.
public enum NamePattern: Hashable, Sendable, CustomStringConvertible {
    case exact(String)
    case oneLabelBelow(String)
    case anyDepthBelow(String)
    case ipNetwork(IPAddress, prefixLength: Int)
    /// A URI, or with `oneSegment` any URI made of it and one more path segment (`…/sa/*`).
    case uri(String, oneSegment: Bool)

    public init(_ text: String) throws(PolicyError) {
        let lowered = text.lowercased()
        if text.contains("://") {
            let oneSegment = text.hasSuffix("/*")
            let base = oneSegment ? String(text.dropLast(1)) : text
            guard !base.contains("*") else {
                throw .invalidPattern(text, "may have a wildcard only as its last path segment ('/*')")
            }
            do {
                // With "/*" the base ends in "/", as a URI's path may.
                self = .uri(try URIRules.validate(base), oneSegment: oneSegment)
            } catch {
                throw .invalidPattern(text, "is not a URI pattern: \(error)")
            }
            return
        }
        if let slash = lowered.firstIndex(of: "/") {
            guard let address = IPAddress(String(lowered[..<slash])),
                let length = Int(lowered[lowered.index(after: slash)...]),
                length >= 0, length <= address.bytes.count * 8
            else { throw .invalidPattern(text, "is not a valid network in CIDR notation") }
            self = .ipNetwork(address, prefixLength: length)
        } else if let address = IPAddress(lowered) {
            self = .ipNetwork(address, prefixLength: address.bytes.count * 8)
        } else if lowered.hasPrefix("**.") {
            self = .anyDepthBelow(try Self.validDomain(String(lowered.dropFirst(3)), pattern: text))
        } else if lowered.hasPrefix("*.") {
            self = .oneLabelBelow(try Self.validDomain(String(lowered.dropFirst(2)), pattern: text))
        } else {
            self = .exact(try Self.validDomain(lowered, pattern: text))
        }
    }

    private static func validDomain(_ domain: String, pattern: String) throws(PolicyError) -> String {
        guard !domain.contains("*") else {
            throw .invalidPattern(pattern, "may have a wildcard only as its first label ('*.' or '**.')")
        }
        do {
            return try HostnameRules.validate(domain)
        } catch {
            throw .invalidPattern(pattern, "is not a name pattern: \(error)")
        }
    }

    /// Whether a validated, lower-case dnsName is allowed by this pattern.
    public func allows(dnsName name: String) -> Bool {
        switch self {
        case .exact(let exact):
            return name == exact
        case .oneLabelBelow(let domain):
            guard name.hasSuffix("." + domain) else { return false }
            let head = name.dropLast(domain.count + 1)
            return !head.isEmpty && !head.contains(".")
        case .anyDepthBelow(let domain):
            return name.hasSuffix("." + domain) && name.count > domain.count + 1
        case .ipNetwork, .uri:
            return false
        }
    }

    /// For a URI pattern, whether it stays within Kubernetes namespace `namespace`'s workload identities: a SPIFFE ID
    /// `spiffe://TRUST-DOMAIN/ns/NAMESPACE/…` (nil for DNS and IP patterns).
    public func staysInNamespace(_ namespace: String) -> Bool? {
        guard case let .uri(uri, _) = self else { return nil }
        guard uri.hasPrefix("spiffe://") else { return false }
        let segments = uri.dropFirst("spiffe://".count).split(separator: "/", omittingEmptySubsequences: false)
        return segments.count >= 4 && segments[1] == "ns" && segments[2] == namespace
    }

    /// Whether a validated URI (as `URIRules.validate` returns it) is allowed by this pattern.
    public func allows(uri: String) -> Bool {
        guard case let .uri(pattern, oneSegment) = self else { return false }
        guard oneSegment else { return uri == pattern }
        guard uri.hasPrefix(pattern) else { return false }
        let segment = uri.dropFirst(pattern.count)
        return !segment.isEmpty && !segment.contains("/")
    }

    public func allows(ipAddress address: IPAddress) -> Bool {
        guard case let .ipNetwork(network, prefixLength) = self else { return false }
        return address.isIn(network: network, prefixLength: prefixLength)
    }

    public var description: String {
        switch self {
        case .exact(let name): name
        case .oneLabelBelow(let domain): "*." + domain
        case .anyDepthBelow(let domain): "**." + domain
        case let .ipNetwork(address, length) where length == address.bytes.count * 8: address.description
        case let .ipNetwork(address, length): "\(address)/\(length)"
        case let .uri(uri, oneSegment): oneSegment ? uri + "*" : uri
        }
    }
}
