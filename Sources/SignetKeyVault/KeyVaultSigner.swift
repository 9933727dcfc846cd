import Crypto
import Foundation
import NIOCore
import SignetAuthority
import SignetHTTP
import SignetKeys
import SwiftASN1
import X509
import _CryptoExtras

/// The CA key in Azure Key Vault: every signature is a `sign` call, and the key never leaves the vault.
public struct KeyVaultSigner: CASigner {
    public let privateKey: Certificate.PrivateKey
    public var backend: String { "azure-key-vault" }
    let key: KeyVaultKey

    /// Fetches the key (the pinned version, or the current one), so that its public key can be checked against
    /// the intermediate certificate before anything is signed.
    public static func connect(client: KeyVaultClient, keyName: String, keyVersion: String?) async throws
        -> KeyVaultSigner
    {
        let answer = try await client.getKey(name: keyName, version: keyVersion)
        guard let jwk = answer.json["key"] as? [String: any Sendable], let kid = jwk["kid"] as? String,
            let version = URL(string: kid)?.lastPathComponent
        else { throw KeyVaultError.invalidAnswer("the key bundle has no key.kid") }
        let key = KeyVaultKey(
            client: client, name: keyName, version: version, kid: kid, publicKey: try JWK.publicKey(jwk))
        return KeyVaultSigner(privateKey: Certificate.PrivateKey(key), key: key)
    }

    public var keyID: String { key.kid }

    /// One quick attempt: /readyz must answer promptly while the vault is away.
    public func checkHealth() async throws {
        var quick = KeyVaultClient.defaultRetry
        quick.attempts = 1
        quick.timeout = .seconds(3)
        _ = try await key.client.with(retry: quick).getKey(name: key.name, version: key.version)
    }
}

/// A Key Vault key as swift-certificates sees it: signing hashes the bytes here, sends the digest, converts the
/// answer to what X.509 carries, and verifies it against the public key before anyone can use it.
struct KeyVaultKey: CustodyKey {
    let client: KeyVaultClient
    let name: String
    let version: String
    let kid: String
    let publicKey: Certificate.PublicKey

    func signSynchronously(bytes: some DataProtocol, signatureAlgorithm: Certificate.SignatureAlgorithm) throws
        -> Certificate.Signature
    {
        throw KeyVaultError.invalidAnswer("a Key Vault key signs only asynchronously")
    }

    func signAsynchronously(bytes: some DataProtocol & Sendable, signatureAlgorithm: Certificate.SignatureAlgorithm)
        async throws -> Certificate.Signature
    {
        let (alg, digest): (String, [UInt8])
        switch signatureAlgorithm {
        case .ecdsaWithSHA256: (alg, digest) = ("ES256", Array(SHA256.hash(data: bytes)))
        case .ecdsaWithSHA384: (alg, digest) = ("ES384", Array(SHA384.hash(data: bytes)))
        case .sha256WithRSAEncryption: (alg, digest) = ("RS256", Array(SHA256.hash(data: bytes)))
        case .sha384WithRSAEncryption: (alg, digest) = ("RS384", Array(SHA384.hash(data: bytes)))
        default:
            throw KeyVaultError.invalidAnswer(
                "signature algorithm \(signatureAlgorithm) is not supported with Key Vault")
        }
        let answer = try await client.sign(name: name, version: version, algorithm: alg, digest: digest)
        guard let value = answer.json["value"] as? String, let raw = Base64URL.decode(value).map(Array.init) else {
            throw KeyVaultError.invalidAnswer("the sign answer has no value")
        }
        // X.509 carries ECDSA signatures as DER SEQUENCE { r, s }; Key Vault returns JOSE's raw r||s.
        guard let signatureBytes = alg.hasPrefix("ES") ? RawECDSASignature.der(raw) : raw else {
            throw KeyVaultError.invalidAnswer("an ECDSA signature of \(raw.count) bytes")
        }
        let signature = try Certificate.Signature(
            signatureAlgorithm: signatureAlgorithm, signatureBytes: ASN1BitString(bytes: signatureBytes[...]))
        guard publicKey.isValidSignature(signatureBytes, for: bytes, signatureAlgorithm: signatureAlgorithm) else {
            throw KeyVaultError.wrongSignature("request \(answer.requestID ?? "?")")
        }
        SignatureReceipt.current?.record(
            .init(keyVersion: (answer.json["kid"] as? String) ?? kid, requestID: answer.requestID))
        return signature
    }

    static func == (lhs: Self, rhs: Self) -> Bool { lhs.kid == rhs.kid }
    func hash(into hasher: inout Hasher) { hasher.combine(kid) }
}

/// Public keys from JSON Web Keys (RFC 7517) as Key Vault returns them.
enum JWK {
    static func publicKey(_ jwk: [String: any Sendable]) throws -> Certificate.PublicKey {
        func member(_ name: String) throws -> [UInt8] {
            guard let text = jwk[name] as? String, let bytes = Base64URL.decode(text).map(Array.init) else {
                throw KeyVaultError.invalidAnswer("the JWK has no '\(name)'")
            }
            return bytes
        }
        switch jwk["kty"] as? String {
        case "EC", "EC-HSM":
            let crv = jwk["crv"] as? String
            let length = crv == "P-256" ? 32 : crv == "P-384" ? 48 : 0
            guard length > 0 else { throw KeyVaultError.invalidAnswer("unsupported curve \(crv ?? "none")") }
            // Rebuild the uncompressed point, padding coordinates the service may have shortened.
            let pad = { (bytes: [UInt8]) in
                [UInt8](repeating: 0, count: max(0, length - bytes.count)) + bytes.suffix(length)
            }
            let point = [0x04] + pad(try member("x")) + pad(try member("y"))
            return length == 32
                ? .init(try P256.Signing.PublicKey(x963Representation: point))
                : .init(try P384.Signing.PublicKey(x963Representation: point))
        case "RSA", "RSA-HSM":
            return .init(try _RSA.Signing.PublicKey(n: try member("n"), e: try member("e")))
        default:
            throw KeyVaultError.invalidAnswer("unsupported key type \(jwk["kty"] as? String ?? "none")")
        }
    }
}
