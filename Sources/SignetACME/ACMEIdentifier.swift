import SignetAuthority

/// What an order asks a certificate for (RFC 8555 §9.7.7): a DNS name, possibly a wildcard, or an IP address
/// (RFC 8738). Values are canonical: DNS names lower-cased and validated, addresses in their textual form.
public struct ACMEIdentifier: Hashable, Sendable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Codable { case dns, ip }

    public let type: Kind
    public let value: String

    public init(type: Kind, value: String) {
        self.type = type
        self.value = value
    }

    /// Validates an identifier as a client sent it; per-identifier problems are `rejectedIdentifier` or
    /// `unsupportedIdentifier` subproblems of one answer.
    public static func parse(type: String, value: String) throws(ACMEError) -> ACMEIdentifier {
        switch type {
        case "dns":
            if IPAddress(value) != nil {
                throw ACMEError(
                    .rejectedIdentifier, "'\(value)' is an IP address; send it as an identifier of type ip",
                    identifier: ACMEIdentifier(type: .dns, value: value))
            }
            do {
                return ACMEIdentifier(type: .dns, value: try HostnameRules.validate(value))
            } catch {
                throw ACMEError(
                    .rejectedIdentifier, "'\(value)' is not a valid DNS name: \(error)",
                    identifier: ACMEIdentifier(type: .dns, value: value))
            }
        case "ip":
            guard let address = IPAddress(value) else {
                throw ACMEError(
                    .malformed, "'\(value)' is not an IPv4 or IPv6 address",
                    identifier: ACMEIdentifier(type: .ip, value: value))
            }
            return ACMEIdentifier(type: .ip, value: address.description)
        default:
            throw ACMEError(
                .unsupportedIdentifier, "identifier type '\(type)' is not supported; use dns or ip",
                identifier: ACMEIdentifier(type: .dns, value: value))
        }
    }

    public var isWildcard: Bool { type == .dns && value.hasPrefix("*.") }

    /// The identifier an authorization is for: a wildcard's base name (RFC 8555 §7.1.4), anything else unchanged.
    public var authorizationIdentifier: ACMEIdentifier {
        isWildcard ? ACMEIdentifier(type: .dns, value: String(value.dropFirst(2))) : self
    }

    /// The name as policies and certificates spell it.
    public var description: String { value }

    public var json: [String: Any] { ["type": type.rawValue, "value": value] }
}
