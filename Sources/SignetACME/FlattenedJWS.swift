import Crypto
import Foundation
import SignetAuthority

/// A request body as ACME sends it (RFC 8555 §6.2): a JWS in flattened JSON serialization, whose protected header
/// names `alg`, `nonce`, `url` and exactly one of `jwk` (a new account, or a key proving itself) and `kid` (an
/// account URL). Hand-written on swift-crypto: no package here verifies JWS with the algorithms ACME clients use.
public struct FlattenedJWS: Sendable {
    public let algorithm: String
    public let nonce: String?
    public let url: String
    /// The account URL, for requests signed by an existing account.
    public let keyID: String?
    /// The key in the header, for newAccount and requests a certificate's own key signs.
    public let jwk: JSONWebKey?
    /// The decoded payload; empty for POST-as-GET.
    public let payload: Data
    /// The payload's base64url text as sent (an inner JWS's payload is compared against it).
    public let encodedPayload: String
    let signingInput: Data
    let signature: Data

    public var isPostAsGet: Bool { encodedPayload.isEmpty }

    /// Parses a request body. Everything but the signature is checked here; `verify(with:)` checks that.
    public init(body: Data) throws(ACMEError) {
        guard let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
            throw ACMEError(.malformed, "the request body is not a JSON object (a flattened JWS)")
        }
        try self.init(object: object)
    }

    public init(object: [String: Any]) throws(ACMEError) {
        if object["signatures"] != nil {
            throw ACMEError(.malformed, "the JWS must use the flattened serialization, with one signature")
        }
        if object["header"] != nil { throw ACMEError(.malformed, "the JWS must not have an unprotected header") }
        if let extra = Set(object.keys).subtracting(["protected", "payload", "signature"]).sorted().first {
            throw ACMEError(.malformed, "the JWS has an unknown member '\(extra)'")
        }
        guard let protectedText = object["protected"] as? String, let payloadText = object["payload"] as? String,
            let signatureText = object["signature"] as? String
        else {
            throw ACMEError(.malformed, "the JWS needs protected, payload and signature, each a string")
        }
        guard let headerData = Base64URL.decode(protectedText),
            let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any]
        else {
            throw ACMEError(.malformed, "the JWS protected header is not base64url-encoded JSON")
        }
        guard let payload = Base64URL.decode(payloadText) else {
            throw ACMEError(.malformed, "the JWS payload is not base64url")
        }
        guard let signature = Base64URL.decode(signatureText), !signature.isEmpty else {
            throw ACMEError(.malformed, "the JWS signature is not base64url")
        }
        guard let algorithm = header["alg"] as? String else {
            throw ACMEError(.malformed, "the JWS protected header has no alg")
        }
        guard JSONWebKey.supportedAlgorithms.contains(algorithm) else {
            throw ACMEError(
                .badSignatureAlgorithm, "JWS algorithm '\(algorithm)' is not accepted",
                algorithms: JSONWebKey.supportedAlgorithms)
        }
        if let critical = header["crit"] {
            throw ACMEError(
                .malformed, "the JWS names critical header parameters (\(critical)) this server does not understand")
        }
        guard let url = header["url"] as? String, !url.isEmpty else {
            throw ACMEError(.malformed, "the JWS protected header has no url")
        }
        let keyID = header["kid"] as? String
        let jwkObject = header["jwk"] as? [String: Any]
        guard (keyID == nil) != (jwkObject == nil) else {
            throw ACMEError(.malformed, "the JWS protected header must have exactly one of jwk and kid")
        }
        if header["nonce"] != nil, !(header["nonce"] is String) {
            throw ACMEError(.malformed, "the JWS nonce is not a string")
        }
        self.algorithm = algorithm
        self.nonce = header["nonce"] as? String
        self.url = url
        self.keyID = keyID
        self.jwk = try jwkObject.map { object throws(ACMEError) in try JSONWebKey(json: object) }
        self.payload = payload
        self.encodedPayload = payloadText
        self.signingInput = Data((protectedText + "." + payloadText).utf8)
        self.signature = signature
    }

    /// Checks that `key` made the signature with the algorithm the header names, which must be the key's own.
    public func verify(with key: JSONWebKey) throws(ACMEError) {
        guard key.accepts(algorithm) else {
            throw ACMEError(
                .badSignatureAlgorithm, "JWS algorithm '\(algorithm)' does not fit the account's \(key.algorithm) key",
                algorithms: JSONWebKey.supportedAlgorithms)
        }
        guard key.verifies(signature, over: signingInput, algorithm: algorithm) else {
            throw ACMEError(.malformed, "JWS verification error: the signature does not verify")
        }
    }

    /// The payload as a JSON object (`{}` for POST-as-GET).
    public func payloadObject() throws(ACMEError) -> [String: Any] {
        if isPostAsGet { return [:] }
        guard let object = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any] else {
            throw ACMEError(.malformed, "the JWS payload is not a JSON object")
        }
        return object
    }
}

/// External Account Binding (RFC 8555 §7.3.4): a JWS inside newAccount's payload, MACed with a key the CA handed
/// out, binding the new account's key to that pre-existing external account.
public enum ExternalAccountBinding {
    public static let algorithms = ["HS256", "HS384", "HS512"]

    /// Verifies the binding and returns the external key id it names. `macKey` looks up a key id's HMAC key (nil:
    /// unknown). The checks, in order: flattened JWS; an HMAC algorithm; no nonce; the url of the outer request;
    /// a known key id; the MAC; a payload that is the outer request's account key.
    public static func verify(
        _ object: [String: Any], outerURL: String, accountKey: JSONWebKey, macKey: (String) -> [UInt8]?
    ) throws(ACMEError) -> String {
        guard Set(object.keys) == ["protected", "payload", "signature"],
            let protectedText = object["protected"] as? String,
            let payloadText = object["payload"] as? String, let signatureText = object["signature"] as? String,
            let headerData = Base64URL.decode(protectedText),
            let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any],
            let payload = Base64URL.decode(payloadText), let signature = Base64URL.decode(signatureText)
        else {
            throw ACMEError(.malformed, "externalAccountBinding is not a flattened JWS")
        }
        guard let algorithm = header["alg"] as? String, algorithms.contains(algorithm) else {
            throw ACMEError(
                .badSignatureAlgorithm, "externalAccountBinding must be MACed with HS256, HS384 or HS512",
                algorithms: algorithms)
        }
        guard header["nonce"] == nil else {
            throw ACMEError(.malformed, "externalAccountBinding must not have a nonce")
        }
        guard header["url"] as? String == outerURL else {
            throw ACMEError(.unauthorized, "externalAccountBinding's url is not this request's")
        }
        guard let keyID = header["kid"] as? String, !keyID.isEmpty, let secret = macKey(keyID) else {
            throw ACMEError(.unauthorized, "externalAccountBinding names an unknown key id")
        }
        let input = Data((protectedText + "." + payloadText).utf8)
        let key = SymmetricKey(data: secret)
        let valid: Bool
        switch algorithm {
        case "HS256": valid = HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: input, using: key)
        case "HS384": valid = HMAC<SHA384>.isValidAuthenticationCode(signature, authenticating: input, using: key)
        default: valid = HMAC<SHA512>.isValidAuthenticationCode(signature, authenticating: input, using: key)
        }
        guard valid else {
            throw ACMEError(.unauthorized, "externalAccountBinding's MAC does not verify with key id '\(keyID)'")
        }
        guard let bound = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any],
            (try? JSONWebKey(json: bound)) == accountKey
        else {
            throw ACMEError(.unauthorized, "externalAccountBinding binds another key than the account's")
        }
        return keyID
    }
}
