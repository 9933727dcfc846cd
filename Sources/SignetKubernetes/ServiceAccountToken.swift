import Crypto
import Foundation
import SignetAuthority
import _CryptoExtras

/// Who a Kubernetes service-account token speaks for.
public struct ServiceAccountIdentity: Sendable, Hashable, CustomStringConvertible {
    public var namespace: String
    public var name: String

    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }

    /// From a username `system:serviceaccount:<namespace>:<name>` (TokenReview's answer, the token's `sub`).
    public init?(username: String) {
        let parts = username.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "system", parts[1] == "serviceaccount", !parts[2].isEmpty, !parts[3].isEmpty
        else { return nil }
        self.init(namespace: String(parts[2]), name: String(parts[3]))
    }

    public var description: String { "\(namespace)/\(name)" }
}

public enum ServiceAccountTokenError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case unsupportedAlgorithm(String)
    case unknownKey(String?)
    case badSignature
    case expired
    case notYetValid
    case wrongIssuer(String?)
    case wrongAudience([String])
    case notAServiceAccount(String?)
    case rejected(String)

    public var description: String {
        switch self {
        case .malformed(let what): "the service-account token is malformed: \(what)"
        case .unsupportedAlgorithm(let algorithm):
            "the service-account token is signed with \(algorithm); RS256 and ES256 are supported"
        case .unknownKey(let id): "the service-account token's key \(id ?? "(no kid)") is not among the cluster's keys"
        case .badSignature: "the service-account token's signature does not verify"
        case .expired: "the service-account token has expired"
        case .notYetValid: "the service-account token is not valid yet"
        case .wrongIssuer(let issuer):
            "the service-account token was issued by \(issuer ?? "nobody"), not the configured cluster"
        case .wrongAudience(let audiences):
            "the service-account token is for [\(audiences.joined(separator: ", "))], not for Signet; project one with Signet's audience"
        case .notAServiceAccount(let subject): "the token's subject \(subject ?? "(none)") is not a service account"
        case .rejected(let why): "the cluster rejected the service-account token: \(why)"
        }
    }
}

/// A JSON Web Key Set as the API server publishes it at `/openid/v1/jwks`: RSA keys, and EC P-256 keys.
public struct JSONWebKeySet: Sendable {
    enum Key: Sendable {
        case rsa(_RSA.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
    }

    let keys: [(id: String?, key: Key)]

    public init(_ json: JSONValue) throws {
        guard case .array(let entries)? = json["keys"] else {
            throw ServiceAccountTokenError.malformed("the JWKS has no keys")
        }
        var keys: [(String?, Key)] = []
        for entry in entries {
            let id = entry["kid"]?.string
            switch entry["kty"]?.string {
            case "RSA":
                guard let n = entry["n"]?.string.flatMap(Base64URL.decode),
                    let e = entry["e"]?.string.flatMap(Base64URL.decode)
                else { continue }
                keys.append((id, .rsa(try _RSA.Signing.PublicKey(n: n, e: e))))
            case "EC" where entry["crv"]?.string == "P-256":
                guard let x = entry["x"]?.string.flatMap(Base64URL.decode),
                    let y = entry["y"]?.string.flatMap(Base64URL.decode)
                else { continue }
                keys.append((id, .p256(try P256.Signing.PublicKey(rawRepresentation: x + y))))
            default:
                continue  // keys of other kinds are someone else's business
            }
        }
        self.keys = keys
    }

    func key(id: String?) -> Key? {
        if let id { return keys.first { $0.id == id }?.key }
        return keys.count == 1 ? keys[0].key : nil
    }
}

/// Offline validation of a projected service-account token (a JWT): signature against the cluster's JWKS, issuer,
/// audience, time, and the subject naming a service account.
public enum ServiceAccountToken {
    struct Header: Decodable {
        var alg: String
        var kid: String?
    }

    struct Claims: Decodable {
        struct KubernetesClaims: Decodable {
            struct Named: Decodable { var name: String }
            var namespace: String
            var serviceaccount: Named
        }

        var iss: String?
        var sub: String?
        var aud: Audience?
        var exp: Double?
        var nbf: Double?
        var kubernetes: KubernetesClaims?

        enum CodingKeys: String, CodingKey {
            case iss, sub, aud, exp, nbf
            case kubernetes = "kubernetes.io"
        }
    }

    /// `aud` is a string or an array of strings.
    struct Audience: Decodable {
        var values: [String]
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let one = try? container.decode(String.self) {
                values = [one]
            } else {
                values = try container.decode([String].self)
            }
        }
    }

    /// Whether the text looks like a JWT at all (three base64url parts), so API tokens are never tried as one.
    public static func looksLikeJWT(_ token: String) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 3
            && parts.allSatisfy {
                !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
            }
    }

    /// The cheap checks, without the signature: the shape, the issuer (when one is given), the audience, the time,
    /// and a service-account subject. Run before a TokenReview, so that a token that cannot be right never costs a
    /// call to the API server.
    @discardableResult
    public static func precheck(
        _ token: String, issuer: String?, audience: String, now: Date = Date(), leeway: TimeInterval = 60
    ) throws(ServiceAccountTokenError) -> ServiceAccountIdentity {
        try check(try decode(token).claims, issuer: issuer, audience: audience, now: now, leeway: leeway)
    }

    private static func decode(_ token: String) throws(ServiceAccountTokenError) -> (
        parts: [String], header: Header, claims: Claims, signature: Data
    ) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let headerData = Base64URL.decode(parts[0]),
            let claimsData = Base64URL.decode(parts[1]),
            let signature = Base64URL.decode(parts[2])
        else {
            throw .malformed("not three base64url parts")
        }
        do {
            return (
                parts, try JSONDecoder().decode(Header.self, from: headerData),
                try JSONDecoder().decode(Claims.self, from: claimsData), signature
            )
        } catch {
            throw .malformed("\(error)")
        }
    }

    private static func check(
        _ claims: Claims, issuer: String?, audience: String, now: Date, leeway: TimeInterval
    ) throws(ServiceAccountTokenError) -> ServiceAccountIdentity {
        if let issuer { guard claims.iss == issuer else { throw .wrongIssuer(claims.iss) } }
        let audiences = claims.aud?.values ?? []
        guard audiences.contains(audience) else { throw .wrongAudience(audiences) }
        let seconds = now.timeIntervalSince1970
        guard let expiry = claims.exp, seconds < expiry + leeway else { throw .expired }
        if let notBefore = claims.nbf, seconds + leeway < notBefore { throw .notYetValid }
        guard let subject = claims.sub, let identity = ServiceAccountIdentity(username: subject) else {
            throw .notAServiceAccount(claims.sub)
        }
        if let bound = claims.kubernetes,
            bound.namespace != identity.namespace || bound.serviceaccount.name != identity.name
        {
            throw .malformed("the kubernetes.io claims disagree with the subject")
        }
        return identity
    }

    public static func verify(
        _ token: String, keys: JSONWebKeySet, issuer: String, audience: String, now: Date = Date(),
        leeway: TimeInterval = 60
    ) throws(ServiceAccountTokenError) -> ServiceAccountIdentity {
        let (parts, header, claims, signature) = try decode(token)
        guard let key = keys.key(id: header.kid) else { throw .unknownKey(header.kid) }
        let signedPart = Data((parts[0] + "." + parts[1]).utf8)
        let valid: Bool
        switch (header.alg, key) {
        case ("RS256", .rsa(let publicKey)):
            valid = publicKey.isValidSignature(
                _RSA.Signing.RSASignature(rawRepresentation: signature), for: signedPart, padding: .insecurePKCS1v1_5)
        case ("ES256", .p256(let publicKey)):
            guard let parsed = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else {
                throw .badSignature
            }
            valid = publicKey.isValidSignature(parsed, for: signedPart)
        case ("RS256", _), ("ES256", _):
            throw .unknownKey(header.kid)
        default:
            throw .unsupportedAlgorithm(header.alg)
        }
        guard valid else { throw .badSignature }
        return try check(claims, issuer: issuer, audience: audience, now: now, leeway: leeway)
    }
}
