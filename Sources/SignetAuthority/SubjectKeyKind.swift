import Crypto
import SwiftASN1
import X509
import _CryptoExtras

/// The kind and strength of a subject's public key, as far as issuance policy cares.
public enum SubjectKeyKind: Hashable, Sendable, CustomStringConvertible {
    case rsa(bits: Int)
    case ecdsa(curve: String)
    case ed25519
    case unknown(String)

    public init(_ key: Certificate.PublicKey) {
        if P256.Signing.PublicKey(key) != nil {
            self = .ecdsa(curve: "P-256")
        } else if P384.Signing.PublicKey(key) != nil {
            self = .ecdsa(curve: "P-384")
        } else if P521.Signing.PublicKey(key) != nil {
            self = .ecdsa(curve: "P-521")
        } else if let rsa = _RSA.Signing.PublicKey(key) {
            self = .rsa(bits: rsa.keySizeInBits)
        } else if Curve25519.Signing.PublicKey(key) != nil {
            self = .ed25519
        } else {
            self = .unknown("an unsupported key type")
        }
    }

    public var isAcceptable: Bool {
        switch self {
        case .rsa(let bits): bits >= 2048
        case .ecdsa(let curve): curve == "P-256" || curve == "P-384"
        case .ed25519: true
        case .unknown: false
        }
    }

    /// Whether a certificate for this key also gets keyEncipherment (RSA key transport in TLS 1.2).
    public var isRSA: Bool {
        if case .rsa = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .rsa(let bits): "RSA-\(bits)"
        case .ecdsa(let curve): "ECDSA \(curve)"
        case .ed25519: "Ed25519"
        case .unknown(let what): what
        }
    }

    private static let rsaEncryption: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 1, 1]
    private static let ecPublicKey: ASN1ObjectIdentifier = [1, 2, 840, 10045, 2, 1]
    private static let curveNames: [ASN1ObjectIdentifier: String] = [
        [1, 3, 132, 0, 33]: "P-224",
        [1, 2, 840, 10045, 3, 1, 1]: "P-192",
        [1, 2, 840, 10045, 3, 1, 7]: "P-256",
        [1, 3, 132, 0, 34]: "P-384",
        [1, 3, 132, 0, 35]: "P-521",
        [1, 3, 132, 0, 10]: "secp256k1",
    ]

    /// Reads just the subjectPublicKeyInfo of a CSR that swift-certificates refused to parse, to name the key
    /// in the error. Returns nil when even that structure is not there.
    static func probe(csrDER: [UInt8]) -> SubjectKeyKind? {
        guard let root = try? DER.parse(csrDER),
            case .constructed(let outer) = root.content,
            let info = outer.first(where: { _ in true }),
            case .constructed(let infoFields) = info.content
        else { return nil }
        let fields = Array(infoFields)
        guard fields.count >= 3, case .constructed(let spkiFields) = fields[2].content else { return nil }
        let spki = Array(spkiFields)
        guard spki.count == 2, case .constructed(let algorithmFields) = spki[0].content else { return nil }
        let algorithm = Array(algorithmFields)
        guard let oid = algorithm.first.flatMap({ try? ASN1ObjectIdentifier(derEncoded: $0) }) else { return nil }
        switch oid {
        case rsaEncryption:
            guard let bitString = try? ASN1BitString(derEncoded: spki[1]),
                let rsaKey = try? DER.parse(bitString.bytes),
                case .constructed(let rsaFields) = rsaKey.content,
                let modulusNode = rsaFields.first(where: { _ in true }),
                case .primitive(let modulus) = modulusNode.content
            else { return .unknown("an RSA key that does not parse") }
            let significant = modulus.drop { $0 == 0 }
            guard let top = significant.first else { return .rsa(bits: 0) }
            return .rsa(bits: (significant.count - 1) * 8 + (8 - top.leadingZeroBitCount))
        case ecPublicKey:
            guard algorithm.count == 2, let curve = try? ASN1ObjectIdentifier(derEncoded: algorithm[1]) else {
                return .unknown("an EC key with explicit or missing curve parameters")
            }
            return .ecdsa(curve: curveNames[curve] ?? "the curve \(curve)")
        default:
            return .unknown("a key of algorithm \(oid)")
        }
    }
}
