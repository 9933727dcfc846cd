import Foundation
import SignetACME
import SignetAuthority
import Testing

/// ACME's JWS and JWK handling against requests made the way ACME clients make them (Python's `cryptography`,
/// Tests/ACME/jws_cases.py): every algorithm clients use, RFC 7638 thumbprints computed independently, and the
/// malformed inputs RFC 8555 §6.2 names, each with its ACME error type.
@Suite("ACME: JWS and JWK")
struct ACMEJWSTests {
    @Test(
        "base64url: every length round-trips and matches Foundation's base64 with the URL alphabet; padding, the standard alphabet and non-zero leftover bits are refused"
    )
    func base64url() {
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255) }
            let encoded = Base64URL.encode(bytes)
            let expected = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
            #expect(encoded == expected)
            #expect(Base64URL.decode(encoded) == Data(bytes))
        }
        for bad in ["AAA=", "A+B/", "A", "AAAAA", "AB", "AAB", "a b", "é"] {
            #expect(Base64URL.decode(bad) == nil, "\(bad)")
        }
        #expect(Base64URL.decode("AA") == Data([0]))
        #expect(Base64URL.decode("") == Data())
    }

    /// The vectors as JSON text, made once per run (text is Sendable; the parsed form is made where it is used).
    static let vectors: String =
        (try? Tool.run("python3", [Fixtures.packageRoot + "/Tests/ACME/jws_cases.py"]).output) ?? "{}"

    static var cases: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(vectors.utf8))) as? [String: Any] ?? [:]
    }

    static func body(_ path: String...) -> [String: Any] {
        var current: Any? = cases
        for key in path { current = (current as? [String: Any])?[key] }
        return current as? [String: Any] ?? [:]
    }

    func kind(_ work: () throws -> Void) -> ACMEError.Kind? {
        do {
            try work()
            return nil
        } catch let error as ACMEError {
            return error.kind
        } catch {
            return .serverInternal
        }
    }

    @Test(
        "PS256 (RSA-PSS, as RFC 7518 §3.5 defines it) verifies with an RSA key; RS256 and PS256 do not stand in for each other"
    )
    func ps256() throws {
        let jws = try FlattenedJWS(object: Self.body("ps256"))
        let key = try #require(jws.jwk)
        try jws.verify(with: key)
        var swapped = Self.body("ps256")
        let header = try #require(Base64URL.decode(swapped["protected"] as? String ?? "")).map { $0 }
        let text = String(decoding: header, as: UTF8.self).replacingOccurrences(of: "PS256", with: "RS256")
        swapped["protected"] = Base64URL.encode(Array(text.utf8))
        #expect(
            kind { try FlattenedJWS(object: swapped).verify(with: key) } == .malformed,
            "a PSS signature is not a PKCS#1 v1.5 one")
    }

    @Test(
        "RS256, ES256, ES384 and EdDSA requests verify with the key in their header, whose thumbprint is RFC 7638's",
        arguments: ["rsa", "p256", "p384", "ed25519"])
    func verifies(_ name: String) throws {
        #expect(!Self.cases.isEmpty, "the vectors were made")
        let key = Self.body("keys", name)
        let jws = try FlattenedJWS(object: Self.body("keys", name, "withJWK"))
        let jwk = try #require(jws.jwk)
        #expect(jws.algorithm == key["alg"] as? String && jwk.algorithm == jws.algorithm)
        #expect(jwk.thumbprint == key["thumbprint"] as? String)
        #expect(jws.nonce == "n1" && jws.url.hasSuffix("/new-account") && jws.keyID == nil)
        try jws.verify(with: jwk)
        #expect(try jws.payloadObject()["termsOfServiceAgreed"] as? Bool == true)

        // POST-as-GET signed by the account: kid, an empty payload.
        let get = try FlattenedJWS(object: Self.body("keys", name, "postAsGet"))
        #expect(get.isPostAsGet && get.keyID == "https://signet.test/acme/default/acct/1" && get.jwk == nil)
        try get.verify(with: jwk)

        // The same signature over another payload: refused.
        var tampered = Self.body("keys", name, "withJWK")
        tampered["payload"] = Base64URL.encode(Array(#"{"termsOfServiceAgreed":false}"#.utf8))
        #expect(kind { try FlattenedJWS(object: tampered).verify(with: jwk) } == .malformed)
        // Another key: refused.
        let other = try #require(
            try FlattenedJWS(object: Self.body("keys", name == "p256" ? "p384" : "p256", "withJWK")).jwk)
        #expect(kind { try jws.verify(with: other) } != nil)
    }

    @Test("malformed requests get their RFC 8555 error types")
    func refusals() throws {
        let p256 = try #require(try FlattenedJWS(object: Self.body("keys", "p256", "withJWK")).jwk)
        let rsa = try #require(try FlattenedJWS(object: Self.body("keys", "rsa", "withJWK")).jwk)
        #expect(
            kind { try FlattenedJWS(object: Self.body("algorithmNotTheKeys")).verify(with: rsa) }
                == .badSignatureAlgorithm)
        #expect(
            kind { try FlattenedJWS(object: Self.body("derSignature")).verify(with: p256) } == .malformed,
            "ECDSA signatures are raw r||s")
        #expect(kind { _ = try FlattenedJWS(object: Self.body("none")) } == .badSignatureAlgorithm)
        #expect(kind { _ = try FlattenedJWS(object: Self.body("hs256")) } == .badSignatureAlgorithm)
        #expect(kind { _ = try FlattenedJWS(object: Self.body("jwkAndKid")) } == .malformed)
        #expect(kind { _ = try FlattenedJWS(object: Self.body("weakRSA")) } == .badPublicKey)
        var withHeader = Self.body("keys", "p256", "withJWK")
        withHeader["header"] = ["kid": "x"]
        #expect(kind { _ = try FlattenedJWS(object: withHeader) } == .malformed)
        var general = Self.body("keys", "p256", "withJWK")
        general["signatures"] = []
        #expect(kind { _ = try FlattenedJWS(object: general) } == .malformed)
        #expect(kind { _ = try FlattenedJWS(body: Data("not json".utf8)) } == .malformed)
        let error = try #require(
            { () -> ACMEError? in
                do {
                    _ = try FlattenedJWS(object: Self.body("none"))
                    return nil
                } catch let error as ACMEError { return error } catch { return nil }
            }())
        #expect(
            error.type == "urn:ietf:params:acme:error:badSignatureAlgorithm"
                && error.algorithms == JSONWebKey.supportedAlgorithms)
    }

    @Test("External Account Binding: HS256 over the account key, for this URL, without a nonce, with a known key id")
    func externalAccountBinding() throws {
        let eab = Self.body("eab")
        let macKey = try #require((eab["macKey"] as? String).flatMap(Base64URL.decode))
        let url = try #require(eab["url"] as? String)
        let account = try #require(try FlattenedJWS(object: Self.body("keys", "p256", "withJWK")).jwk)
        func verify(_ name: String) -> Result<String, ACMEError> {
            do {
                return .success(
                    try ExternalAccountBinding.verify(Self.body("eab", name), outerURL: url, accountKey: account) {
                        $0 == "kid-1" ? Array(macKey) : nil
                    })
            } catch {
                return .failure(error)
            }
        }
        #expect(try verify("good").get() == "kid-1")
        for (name, expected) in [
            ("wrongMAC", ACMEError.Kind.unauthorized), ("withNonce", .malformed), ("otherURL", .unauthorized),
            ("otherKey", .unauthorized), ("unknownKid", .unauthorized),
        ] {
            guard case .failure(let error) = verify(name) else {
                Issue.record("\(name) was accepted")
                continue
            }
            #expect(error.kind == expected, "\(name): \(error)")
        }
    }
}
