import Crypto
import SignetAuthority
import SwiftASN1
import X509

/// What every CA key in Signet's custody shares, whether it is elsewhere (Key Vault, a PKCS#11 token) or a wrapper
/// around another key (timing, admission): the signature algorithm follows from the public key, and the key itself
/// can never be exported, whatever asks.
public protocol CustodyKey: CustomPrivateKey {}

extension CustodyKey {
    public var defaultSignatureAlgorithm: Certificate.SignatureAlgorithm {
        (try? IssuingCA.signatureAlgorithm(for: publicKey)) ?? .ecdsaWithSHA256
    }

    public var supportedSignatureAlgorithms: [Certificate.SignatureAlgorithm] { [defaultSignatureAlgorithm] }

    public static var defaultPEMDiscriminator: String { "PRIVATE KEY" }

    public func serialize(into coder: inout DER.Serializer) throws {
        throw KeyError.unreadable("a CA signing key in custody cannot be exported")
    }
}

/// ECDSA signatures as JOSE (Key Vault) and PKCS#11 give them, r‖s of fixed width, and as X.509 carries them, DER
/// SEQUENCE { r, s }.
public enum RawECDSASignature {
    /// The DER form, or nil when the length is not that of a P-256, P-384 or P-521 signature.
    public static func der(_ raw: [UInt8]) -> [UInt8]? {
        switch raw.count {
        case 64: (try? P256.Signing.ECDSASignature(rawRepresentation: raw)).map { Array($0.derRepresentation) }
        case 96: (try? P384.Signing.ECDSASignature(rawRepresentation: raw)).map { Array($0.derRepresentation) }
        case 132: (try? P521.Signing.ECDSASignature(rawRepresentation: raw)).map { Array($0.derRepresentation) }
        default: nil
        }
    }
}
