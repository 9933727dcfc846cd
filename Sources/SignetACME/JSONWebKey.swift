import Crypto
import Foundation
import SignetAuthority
import _CryptoExtras

/// An account's public key as a JWK (RFC 7517): RSA (RS256, at least 2048 bits, as cert-manager's and certbot's
/// accounts are), EC P-256 / P-384 (ES256 / ES384) or Ed25519 (EdDSA). Hand-written because no package here parses
/// JWKs for verification; the cryptography is swift-crypto's.
public struct JSONWebKey: Sendable, Equatable {
    public enum Key: Sendable {
        case rsa(_RSA.Signing.PublicKey, modulus: Data, exponent: Data)
        case p256(P256.Signing.PublicKey)
        case p384(P384.Signing.PublicKey)
        case ed25519(Curve25519.Signing.PublicKey)
    }

    public let key: Key
    /// RFC 7638 thumbprint (SHA-256, base64url): how keys are compared and accounts found.
    public let thumbprint: String

    public static func == (lhs: JSONWebKey, rhs: JSONWebKey) -> Bool { lhs.thumbprint == rhs.thumbprint }

    /// The `alg` a JWS made with this key must name.
    public var algorithm: String {
        switch key {
        case .rsa: "RS256"
        case .p256: "ES256"
        case .p384: "ES384"
        case .ed25519: "EdDSA"
        }
    }

    public static let supportedAlgorithms = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]

    /// Whether a JWS made with this key may name `algorithm`: an RSA key signs RS256 or PS256, the others their one.
    public func accepts(_ algorithm: String) -> Bool {
        if case .rsa = key { return algorithm == "RS256" || algorithm == "PS256" }
        return algorithm == self.algorithm
    }
    public static let minimumRSABits = 2048

    /// From the JSON object of a JWK. Only the members RFC 7638 hashes are read; a private key is refused.
    public init(json object: [String: Any]) throws(ACMEError) {
        func member(_ name: String) throws(ACMEError) -> String {
            guard let value = object[name] as? String, !value.isEmpty else {
                throw ACMEError(.malformed, "the JWK has no \(name)")
            }
            return value
        }
        func bytes(_ name: String) throws(ACMEError) -> Data {
            guard let data = Base64URL.decode(try member(name)) else {
                throw ACMEError(.malformed, "the JWK's \(name) is not base64url")
            }
            return data
        }
        guard object["d"] == nil else {
            throw ACMEError(.badPublicKey, "the JWK holds a private key; send the public key only")
        }
        let canonical: [(String, String)]
        do {
            switch try member("kty") {
            case "RSA":
                let n = try bytes("n"), e = try bytes("e")
                let bits = (n.drop { $0 == 0 }.count) * 8
                guard bits >= Self.minimumRSABits else {
                    throw ACMEError(
                        .badPublicKey,
                        "RSA keys must have at least \(Self.minimumRSABits) bits, this one has about \(bits)")
                }
                key = .rsa(try _RSA.Signing.PublicKey(n: n, e: e), modulus: n, exponent: e)
                canonical = [("e", try member("e")), ("kty", "RSA"), ("n", try member("n"))]
            case "EC":
                let curve = try member("crv")
                let x = try bytes("x"), y = try bytes("y")
                switch curve {
                case "P-256": key = .p256(try P256.Signing.PublicKey(rawRepresentation: x + y))
                case "P-384": key = .p384(try P384.Signing.PublicKey(rawRepresentation: x + y))
                default: throw ACMEError(.badPublicKey, "EC curve \(curve) is not accepted; use P-256 or P-384")
                }
                canonical = [("crv", curve), ("kty", "EC"), ("x", try member("x")), ("y", try member("y"))]
            case "OKP":
                let curve = try member("crv")
                guard curve == "Ed25519" else {
                    throw ACMEError(.badPublicKey, "OKP curve \(curve) is not accepted; use Ed25519")
                }
                key = .ed25519(try Curve25519.Signing.PublicKey(rawRepresentation: try bytes("x")))
                canonical = [("crv", curve), ("kty", "OKP"), ("x", try member("x"))]
            case let other:
                throw ACMEError(.badPublicKey, "key type \(other) is not accepted; use RSA, EC or OKP (Ed25519)")
            }
        } catch let error as ACMEError {
            throw error
        } catch {
            throw ACMEError(.badPublicKey, "the JWK is not a valid public key: \(error)")
        }
        // RFC 7638: the required members, lexicographic order, no whitespace. Base64url values need no escaping.
        let text = "{" + canonical.map { "\"\($0.0)\":\"\($0.1)\"" }.joined(separator: ",") + "}"
        thumbprint = Base64URL.encode(SHA256.hash(data: Data(text.utf8)))
    }

    /// The key as a DER SubjectPublicKeyInfo, to compare with a CSR's or a certificate's key.
    public var subjectPublicKeyInfo: [UInt8] {
        switch key {
        case .rsa(let key, _, _): Array(key.derRepresentation)
        case .p256(let key): Array(key.derRepresentation)
        case .p384(let key): Array(key.derRepresentation)
        // id-Ed25519 (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING key }.
        case .ed25519(let key):
            [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00] + Array(key.rawRepresentation)
        }
    }

    /// The JWK's JSON object, as RFC 7638 names its members.
    public var json: [String: String] {
        switch key {
        case .rsa(_, let modulus, let exponent):
            ["kty": "RSA", "n": Base64URL.encode(modulus), "e": Base64URL.encode(exponent)]
        case .p256(let key):
            [
                "kty": "EC", "crv": "P-256", "x": Base64URL.encode(key.rawRepresentation.prefix(32)),
                "y": Base64URL.encode(key.rawRepresentation.suffix(32)),
            ]
        case .p384(let key):
            [
                "kty": "EC", "crv": "P-384", "x": Base64URL.encode(key.rawRepresentation.prefix(48)),
                "y": Base64URL.encode(key.rawRepresentation.suffix(48)),
            ]
        case .ed25519(let key): ["kty": "OKP", "crv": "Ed25519", "x": Base64URL.encode(key.rawRepresentation)]
        }
    }

    /// Whether `signature` (as JWS carries it: raw r‖s for ECDSA) signs `input` with `algorithm`.
    func verifies(_ signature: Data, over input: Data, algorithm: String) -> Bool {
        switch (key, algorithm) {
        case (.rsa(let key, _, _), "RS256"):
            return key.isValidSignature(
                _RSA.Signing.RSASignature(rawRepresentation: signature), for: input, padding: .insecurePKCS1v1_5)
        case (.rsa(let key, _, _), "PS256"):
            return key.isValidSignature(
                _RSA.Signing.RSASignature(rawRepresentation: signature), for: input, padding: .PSS)
        case (.p256(let key), "ES256"):
            guard let parsed = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(parsed, for: input)
        case (.p384(let key), "ES384"):
            guard let parsed = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(parsed, for: input)
        case (.ed25519(let key), "EdDSA"):
            return key.isValidSignature(signature, for: input)
        default:
            return false
        }
    }
}
