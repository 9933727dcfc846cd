import Crypto
import SignetAuthority

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// ACME's anti-replay nonces (RFC 8555 §6.5) as every ledger backend makes and checks them: 8 bytes of expiry (Unix
/// milliseconds), 8 random bytes and the first 16 bytes of an HMAC-SHA256 of both under the ledger's nonce key.
/// Issuing one writes nothing, and any process on the same database can check it; the store makes each one single
/// use by recording it as spent until it expires.
public enum ACMENonce {
    /// How long a nonce may wait before it is used.
    public static let lifetimeMilliseconds: Int64 = 3_600_000

    public static func make(key: SymmetricKey, nowMilliseconds: Int64) -> String {
        var bytes = withUnsafeBytes(of: (nowMilliseconds + lifetimeMilliseconds).bigEndian) { Array($0) }
        bytes += withUnsafeBytes(of: UInt64.random(in: 0...UInt64.max)) { Array($0) }
        bytes += HMAC<SHA256>.authenticationCode(for: bytes, using: key).prefix(16)
        return Base64URL.encode(bytes)
    }

    /// The nonce's expiry (Unix milliseconds) if this key made it and it has not expired; nil otherwise.
    public static func expiry(of value: String, key: SymmetricKey, nowMilliseconds: Int64) -> Int64? {
        guard let bytes = Base64URL.decode(value).map(Array.init), bytes.count == 32 else { return nil }
        let stamped = Array(bytes[0..<16])
        let expected = Array(HMAC<SHA256>.authenticationCode(for: stamped, using: key).prefix(16))
        // Compared in constant time: a nonce is a MAC, and a timing difference would help forge one.
        guard zip(expected, bytes[16...]).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0 else { return nil }
        let expires = stamped[0..<8].reduce(Int64(0)) { $0 << 8 | Int64($1) }
        return expires > nowMilliseconds ? expires : nil
    }
}
