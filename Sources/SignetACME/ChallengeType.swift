import Crypto
import SignetAuthority

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The challenges Signet validates (RFC 8555 §8.3–8.4, RFC 8737).
public enum ChallengeType: String, Sendable, Codable, CaseIterable {
    case http01 = "http-01"
    case dns01 = "dns-01"
    case tlsALPN01 = "tls-alpn-01"

    /// Whether this challenge can prove control of `identifier`: wildcards only through DNS (§7.1.3); IP addresses
    /// have no DNS name to hold a TXT record (RFC 8738 §7).
    public func applies(to identifier: ACMEIdentifier, wildcard: Bool) -> Bool {
        switch self {
        case .dns01: identifier.type == .dns
        case .http01, .tlsALPN01: !wildcard
        }
    }

    /// The key authorization (§8.1): the token and the account key's RFC 7638 thumbprint.
    public static func keyAuthorization(token: String, accountThumbprint: String) -> String {
        token + "." + accountThumbprint
    }

    /// What dns-01 expects in the TXT record (§8.4): base64url of the key authorization's SHA-256.
    public static func dnsDigest(of keyAuthorization: String) -> String {
        Base64URL.encode(SHA256.hash(data: Data(keyAuthorization.utf8)))
    }

    /// A fresh challenge token: 128 random bits, base64url without padding (§8.1 asks for at least that much entropy).
    public static func newToken() -> String {
        Base64URL.encode(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) })
    }
}

/// The `acmeIdentifier` extension of a tls-alpn-01 validation certificate (RFC 8737 §3).
public enum TLSALPNChallenge {
    /// id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31.
    public static let extensionOID: [UInt] = [1, 3, 6, 1, 5, 5, 7, 1, 31]
    public static let protocolName = "acme-tls/1"

    /// The extension's expected value: the DER OCTET STRING holding SHA-256 of the key authorization.
    public static func expectedExtensionValue(keyAuthorization: String) -> [UInt8] {
        [0x04, 0x20] + Array(SHA256.hash(data: Data(keyAuthorization.utf8)))
    }

    /// The server name a validator sends: the DNS name, or for an address its reverse-mapping name (RFC 8738 §6).
    public static func serverName(for identifier: ACMEIdentifier) -> String {
        guard identifier.type == .ip, let address = IPAddress(identifier.value) else { return identifier.value }
        if address.bytes.count == 4 {
            return address.bytes.reversed().map(String.init).joined(separator: ".") + ".in-addr.arpa"
        }
        let nibbles = address.bytes.flatMap { [$0 >> 4, $0 & 0x0f] }
        return nibbles.reversed().map { String($0, radix: 16) }.joined(separator: ".") + ".ip6.arpa"
    }
}
