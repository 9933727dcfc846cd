import Crypto
import SwiftASN1
import X509
import _CryptoExtras

/// Key types Signet generates, for CA keys (`signet ca init`) and for client-side keys (`signet issue --generate-key`).
public enum KeyAlgorithm: String, CaseIterable, Sendable {
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
            let size: _RSA.Signing.KeySize = switch self {
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
}
