import Crypto
import Foundation
import SignetAuthority
import _CryptoExtras

/// The client side of ACME's JWS: an account key that signs requests in flattened JSON. Signet itself never signs
/// JWS; this serves its benchmark's ACME client and the tests that speak ACME as cert-manager, certbot and lego do.
public struct JWSSigner: Sendable {
    public enum Key: Sendable {
        case rsa(_RSA.Signing.PrivateKey)
        case p256(P256.Signing.PrivateKey)
        case p384(P384.Signing.PrivateKey)
        case ed25519(Curve25519.Signing.PrivateKey)
    }

    public let key: Key
    public let publicJWK: JSONWebKey

    public init(_ key: Key) throws(ACMEError) {
        self.key = key
        let object: [String: Any]
        switch key {
        case .rsa(let key):
            let components = try? key.publicKey.getKeyPrimitives()
            object = [
                "kty": "RSA", "n": Base64URL.encode(components?.modulus ?? Data()),
                "e": Base64URL.encode(components?.publicExponent ?? Data()),
            ]
        case .p256(let key):
            let raw = key.publicKey.rawRepresentation
            object = [
                "kty": "EC", "crv": "P-256", "x": Base64URL.encode(raw.prefix(32)),
                "y": Base64URL.encode(raw.suffix(32)),
            ]
        case .p384(let key):
            let raw = key.publicKey.rawRepresentation
            object = [
                "kty": "EC", "crv": "P-384", "x": Base64URL.encode(raw.prefix(48)),
                "y": Base64URL.encode(raw.suffix(48)),
            ]
        case .ed25519(let key):
            object = ["kty": "OKP", "crv": "Ed25519", "x": Base64URL.encode(key.publicKey.rawRepresentation)]
        }
        publicJWK = try JSONWebKey(json: object)
    }

    public var algorithm: String { publicJWK.algorithm }

    /// A flattened JWS of `payload` (nil: POST-as-GET's empty payload). `keyID` names the account; without it the
    /// header carries the public key. `extraHeader` overrides or adds header members (tests that send bad ones).
    public func sign(
        payload: Data?, url: String, nonce: String?, keyID: String?, extraHeader: [String: Any] = [:]
    ) throws -> Data {
        var header: [String: Any] = ["alg": algorithm, "url": url]
        if let nonce { header["nonce"] = nonce }
        if let keyID { header["kid"] = keyID } else { header["jwk"] = publicJWK.json }
        for (name, value) in extraHeader { header[name] = value }
        let protected = Base64URL.encode(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        let encodedPayload = payload.map(Base64URL.encode) ?? ""
        let input = Data((protected + "." + encodedPayload).utf8)
        let signature: Data
        switch key {
        case .rsa(let key): signature = try key.signature(for: input, padding: .insecurePKCS1v1_5).rawRepresentation
        case .p256(let key): signature = try key.signature(for: input).rawRepresentation
        case .p384(let key): signature = try key.signature(for: input).rawRepresentation
        case .ed25519(let key): signature = try key.signature(for: input)
        }
        return try JSONSerialization.data(withJSONObject: [
            "protected": protected, "payload": encodedPayload, "signature": Base64URL.encode(signature),
        ])
    }

    /// An External Account Binding (RFC 8555 §7.3.4) of this key, MACed with HS256.
    public func externalAccountBinding(keyID: String, macKey: [UInt8], url: String) throws -> [String: Any] {
        let protected = Base64URL.encode(
            try JSONSerialization.data(
                withJSONObject: ["alg": "HS256", "kid": keyID, "url": url], options: [.sortedKeys]))
        let payload = Base64URL.encode(
            try JSONSerialization.data(withJSONObject: publicJWK.json, options: [.sortedKeys]))
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data((protected + "." + payload).utf8), using: SymmetricKey(data: macKey))
        return ["protected": protected, "payload": payload, "signature": Base64URL.encode(Data(mac))]
    }
}
