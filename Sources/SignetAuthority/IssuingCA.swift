import Crypto
import SwiftASN1
import X509
import _CryptoExtras

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The issuing intermediate as issuance sees it: its certificate, the chain up to the root, and a handle on its
/// private key. The key is a `Certificate.PrivateKey`, which may be an in-memory key or a `CustomPrivateKey`
/// whose signature is made elsewhere (Key Vault, an HSM): issuance only ever calls `signAsynchronously` on it.
public struct IssuingCA: Sendable {
    public let certificate: Certificate
    /// Intermediates between `certificate` and the root, nearest first; usually empty.
    public let intermediates: [Certificate]
    public let root: Certificate
    public let key: Certificate.PrivateKey
    public let signatureAlgorithm: Certificate.SignatureAlgorithm
    /// The CA's subject key identifier: the AKI of everything it issues, and its id in the ledger.
    public let keyIdentifier: [UInt8]
    /// The URL of this CA's CRL, put in every certificate it issues as cRLDistributionPoints (none when nil).
    public var crlDistributionPoint: String?
    /// The URL of Signet's OCSP responder, put in every certificate it issues as authorityInfoAccess (none when nil).
    public var ocspResponderURL: String?

    public init(
        certificate: Certificate, intermediates: [Certificate] = [], root: Certificate, key: Certificate.PrivateKey
    ) throws {
        self.certificate = certificate
        self.intermediates = intermediates
        self.root = root
        self.key = key
        self.signatureAlgorithm = try Self.signatureAlgorithm(for: certificate.publicKey)
        if let ski = try? certificate.extensions.subjectKeyIdentifier {
            self.keyIdentifier = Array(ski.keyIdentifier)
        } else {
            self.keyIdentifier = Array(SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier)
        }
    }

    /// What a `tls.crt` carries after the leaf: the issuing CA and any intermediates above it, never the root.
    public var chainAboveLeaf: [Certificate] { [certificate] + intermediates }

    /// The algorithm a CA key of this type signs with. swift-certificates keeps its own mapping internal.
    public static func signatureAlgorithm(for key: Certificate.PublicKey) throws -> Certificate.SignatureAlgorithm {
        if P256.Signing.PublicKey(key) != nil { return .ecdsaWithSHA256 }
        if P384.Signing.PublicKey(key) != nil { return .ecdsaWithSHA384 }
        if P521.Signing.PublicKey(key) != nil { return .ecdsaWithSHA512 }
        if _RSA.Signing.PublicKey(key) != nil { return .sha256WithRSAEncryption }
        if Curve25519.Signing.PublicKey(key) != nil { return .ed25519 }
        throw CAMaterialError.unsupportedKey
    }
}

public enum CAMaterialError: Error, Equatable, Sendable, CustomStringConvertible {
    case unsupportedKey

    public var description: String {
        switch self {
        case .unsupportedKey: "the CA key type is not supported; use ECDSA P-256/P-384, RSA or Ed25519"
        }
    }
}

/// Serial numbers: 20 random bytes with the top bit clear, so the INTEGER is positive and fits RFC 5280's
/// 20-octet limit with 159 bits of entropy.
public enum SerialNumbers {
    public static func random() -> Certificate.SerialNumber {
        var bytes = [UInt8](repeating: 0, count: 20)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = generator.next() }
        bytes[0] &= 0x7F
        if bytes[0] == 0 { bytes[0] = 0x01 }  // keep the full 20 octets so serials have one length
        return Certificate.SerialNumber(bytes: bytes)
    }

    public static func hex(_ serial: Certificate.SerialNumber) -> String {
        serial.bytes.hexString
    }
}

extension Certificate.PublicKey {
    /// SHA-256 of the SubjectPublicKeyInfo, as `openssl pkey -pubin -outform DER | sha256sum` prints it: how the
    /// ledger and error messages name a key.
    public var sha256Fingerprint: String {
        var serializer = DER.Serializer()
        guard (try? serializer.serialize(self)) != nil else { return "?" }
        return Array(SHA256.hash(data: serializer.serializedBytes)).hexString
    }
}

extension Collection<UInt8> {
    /// Lower-case hexadecimal, two digits a byte: how Signet writes serials, key ids and digests.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    /// The bytes of hexadecimal text (either case, two digits a byte): serials, key ids, CKA_IDs. Nil for anything else.
    public init?(hexString text: String) {
        let digits = Array(text.utf8)
        guard !digits.isEmpty, digits.count % 2 == 0 else { return nil }
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        self = bytes
    }
}
