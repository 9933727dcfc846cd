/// A requested name Signet will not certify, with the reason in words a requester can act on.
public enum NameError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidDNSName(String, String)
    case invalidIPAddress(String)
    case ipAddressInDNSNames(String)
    case invalidURI(String, String)

    public var description: String {
        switch self {
        case let .invalidDNSName(name, reason): "dnsName '\(name)' \(reason)"
        case let .invalidIPAddress(text): "ipAddress '\(text)' is not an IPv4 or IPv6 address"
        case let .ipAddressInDNSNames(text): "dnsName '\(text)' is an IP address; put IP addresses in ipAddresses"
        case let .invalidURI(text, reason): "uri '\(text)' \(reason)"
        }
    }
}
