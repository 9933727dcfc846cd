/// Where a managed certificate is delivered: a Secret in a namespace of a cluster that Signet is configured for.
public struct DeliveryTarget: Hashable, Sendable, Codable, CustomStringConvertible {
    public var cluster: String
    public var namespace: String
    public var secretName: String

    public init(cluster: String, namespace: String, secretName: String) {
        self.cluster = cluster
        self.namespace = namespace
        self.secretName = secretName
    }

    public var description: String { "\(cluster)/\(namespace)/\(secretName)" }

    /// Checks the Kubernetes naming rules, so that a bad name is refused when the certificate is registered rather
    /// than at every renewal by the API server.
    public func validate() throws(TargetError) {
        guard KubernetesNames.isLabel(cluster) else {
            throw .invalid("cluster '\(cluster)' is not a valid name (lower-case letters, digits and '-', at most 63)")
        }
        guard KubernetesNames.isLabel(namespace) else {
            throw .invalid("namespace '\(namespace)' is not a valid Kubernetes namespace (a DNS-1123 label)")
        }
        guard KubernetesNames.isSubdomain(secretName) else {
            throw .invalid("secretName '\(secretName)' is not a valid Kubernetes object name (a DNS-1123 subdomain)")
        }
    }
}

/// Which targets a caller may deliver to: `cluster/namespace/secret`, each part a name, `*`, or a name with one `*`
/// in it (`istio-*`, `*-tls`).
public struct TargetPattern: Hashable, Sendable, CustomStringConvertible {
    private let parts: [String]

    public init(_ text: String) throws(TargetError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else { throw .invalid("target pattern '\(text)' is not cluster/namespace/secret") }
        for part in parts {
            let stars = part.filter { $0 == "*" }.count
            let literal = part.filter { $0 != "*" }
            guard stars <= 1, part == "*" || !literal.isEmpty,
                literal.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") })
            else {
                throw .invalid("target pattern '\(text)': '\(part)' must be a name, '*', or a name with one '*'")
            }
        }
        self.parts = parts
    }

    public var description: String { parts.joined(separator: "/") }

    public func allows(_ target: DeliveryTarget) -> Bool {
        zip(parts, [target.cluster, target.namespace, target.secretName]).allSatisfy(Self.matches)
    }

    private static func matches(_ pattern: String, _ value: String) -> Bool {
        guard let star = pattern.firstIndex(of: "*") else { return pattern == value }
        let prefix = pattern[..<star]
        let suffix = pattern[pattern.index(after: star)...]
        return value.count >= prefix.count + suffix.count && value.hasPrefix(prefix) && value.hasSuffix(suffix)
    }
}

public enum TargetError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let what): what
        }
    }
}

/// Kubernetes' object-name grammars (DNS-1123).
public enum KubernetesNames {
    /// A label: at most 63 of `[a-z0-9-]`, starting and ending alphanumeric (namespaces).
    public static func isLabel(_ name: String) -> Bool {
        guard (1...63).contains(name.utf8.count), let first = name.utf8.first, let last = name.utf8.last else {
            return false
        }
        let alphanumeric: (UInt8) -> Bool = {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
        }
        return alphanumeric(first) && alphanumeric(last)
            && name.utf8.allSatisfy { alphanumeric($0) || $0 == UInt8(ascii: "-") }
    }

    /// A subdomain: at most 253, dot-separated labels (Secret names).
    public static func isSubdomain(_ name: String) -> Bool {
        name.utf8.count <= 253
            && name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { isLabel(String($0)) }
    }
}
