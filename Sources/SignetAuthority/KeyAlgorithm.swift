import Crypto
import SwiftASN1
import X509
import _CryptoExtras

/// Key types Signet generates, for CA keys (`signet ca init`) and for client-side keys (`signet issue --generate-key`).
public enum KeyAlgorithm: String, CaseIterable, Codable, Sendable {
    case ecdsaP256 = "ecdsa-p256"
    case ecdsaP384 = "ecdsa-p384"
    case rsa2048 = "rsa-2048"
    case rsa3072 = "rsa-3072"
    case rsa4096 = "rsa-4096"
    case ed25519

    /// A fresh key and its unencrypted PKCS#8 PEM.
    public func generate() throws -> (key: Certificate.PrivateKey, pkcs8PEM: String) {
        switch self {
        case .ecdsaP256:
            let key = P256.Signing.PrivateKey()
            return (Certificate.PrivateKey(key), key.pemRepresentation)
        case .ecdsaP384:
            let key = P384.Signing.PrivateKey()
            return (Certificate.PrivateKey(key), key.pemRepresentation)
        case .rsa2048, .rsa3072, .rsa4096:
            let size: _RSA.Signing.KeySize =
                switch self {
                case .rsa2048: .bits2048
                case .rsa3072: .bits3072
                default: .bits4096
                }
            let key = try _RSA.Signing.PrivateKey(keySize: size)
            return (Certificate.PrivateKey(key), key.pkcs8PEMRepresentation)
        case .ed25519:
            let key = Curve25519.Signing.PrivateKey()
            return (Certificate.PrivateKey(key), try Certificate.PrivateKey(key).serializeAsPEM().pemString)
        }
    }

    /// The signature algorithm a CSR made with this key uses.
    public var requestSignatureAlgorithm: Certificate.SignatureAlgorithm {
        switch self {
        case .ecdsaP256: .ecdsaWithSHA256
        case .ecdsaP384: .ecdsaWithSHA384
        case .ed25519: .ed25519
        case .rsa2048, .rsa3072, .rsa4096: .sha256WithRSAEncryption
        }
    }

    /// A fresh key and a CSR for it with an empty subject: the names go in the request body, not the CSR.
    public func generateWithRequest() throws -> (key: Certificate.PrivateKey, pkcs8PEM: String, csrPEM: String) {
        let (key, pem) = try generate()
        return (key, pem, try signingRequest(for: key))
    }

    /// A CSR (PEM) for `key`, which must be of this algorithm, with an empty subject.
    public func signingRequest(for key: Certificate.PrivateKey) throws -> String {
        let request = try CertificateSigningRequest(
            version: .v1, subject: DistinguishedName(), privateKey: key,
            attributes: CertificateSigningRequest.Attributes(), signatureAlgorithm: requestSignatureAlgorithm
        )
        return try request.serializeAsPEM().pemString
    }

    /// The algorithm of an existing key, or nil for kinds Signet does not generate.
    public static func of(_ key: Certificate.PublicKey) -> KeyAlgorithm? {
        if P256.Signing.PublicKey(key) != nil { return .ecdsaP256 }
        if P384.Signing.PublicKey(key) != nil { return .ecdsaP384 }
        if Curve25519.Signing.PublicKey(key) != nil { return .ed25519 }
        guard let rsa = _RSA.Signing.PublicKey(key) else { return nil }
        return switch rsa.keySizeInBits {
        case 2048: .rsa2048
        case 3072: .rsa3072
        case 4096: .rsa4096
        default: nil
        }
    }

    /// From cert-manager's `privateKey {algorithm, size}` (the shape of managed certificates and of the Certificate
    /// resource): ECDSA 256 (default) or 384, RSA 2048 (default), 3072 or 4096, Ed25519 without a size.
    public init?(algorithm: String, size: Int?) {
        switch (algorithm, size) {
        case ("ECDSA", nil), ("ECDSA", 256): self = .ecdsaP256
        case ("ECDSA", 384): self = .ecdsaP384
        case ("RSA", nil), ("RSA", 2048): self = .rsa2048
        case ("RSA", 3072): self = .rsa3072
        case ("RSA", 4096): self = .rsa4096
        case ("Ed25519", nil): self = .ed25519
        default: return nil
        }
    }

    /// The cert-manager form of this algorithm.
    public var algorithmAndSize: (algorithm: String, size: Int?) {
        switch self {
        case .ecdsaP256: ("ECDSA", 256)
        case .ecdsaP384: ("ECDSA", 384)
        case .rsa2048: ("RSA", 2048)
        case .rsa3072: ("RSA", 3072)
        case .rsa4096: ("RSA", 4096)
        case .ed25519: ("Ed25519", nil)
        }
    }

    public static let offeredKeys = "ECDSA 256 or 384, RSA 2048, 3072 or 4096, or Ed25519 (no size)"
}
