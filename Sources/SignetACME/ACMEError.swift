/// An ACME error (RFC 8555 §6.7): its type in the `urn:ietf:params:acme:error:` namespace and a detail a client
/// can act on. Mapped to `application/problem+json` at the HTTP edge.
public struct ACMEError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case malformed, unauthorized, badNonce, badSignatureAlgorithm, badPublicKey, accountDoesNotExist
        case externalAccountRequired, rejectedIdentifier, unsupportedIdentifier, badCSR, orderNotReady, rateLimited
        case serverInternal, alreadyReplaced, alreadyRevoked, badRevocationReason, invalidProfile, invalidContact
        case unsupportedContact, userActionRequired
        // Only inside a challenge's or an authorization's `error`.
        case connection, dns, tls, incorrectResponse, caa
    }

    public var kind: Kind
    public var detail: String
    /// For `badSignatureAlgorithm`: the algorithms the server accepts (RFC 8555 §6.2).
    public var algorithms: [String]?
    /// The identifier a subproblem is about (RFC 8555 §6.7.1).
    public var identifier: ACMEIdentifier?
    /// Per-identifier problems of a request about several identifiers.
    public var subproblems: [ACMEError]
    /// The HTTP status, when it is not the kind's usual one (404 for an unknown resource, 415, 405, 413, 503).
    public var statusOverride: Int?
    /// Seconds a client should wait (rateLimited, 503).
    public var retryAfter: Int?

    public init(
        _ kind: Kind, _ detail: String, algorithms: [String]? = nil, identifier: ACMEIdentifier? = nil,
        subproblems: [ACMEError] = [], status: Int? = nil, retryAfter: Int? = nil
    ) {
        self.kind = kind
        self.detail = detail
        self.algorithms = algorithms
        self.identifier = identifier
        self.subproblems = subproblems
        self.statusOverride = status
        self.retryAfter = retryAfter
    }

    public var type: String { "urn:ietf:params:acme:error:" + kind.rawValue }
    public var description: String { "\(kind.rawValue): \(detail)" }

    /// The status codes Boulder and Pebble use for each type (RFC 8555 §6.7 leaves them to the server).
    public var status: Int {
        if let statusOverride { return statusOverride }
        switch kind {
        case .unauthorized, .orderNotReady, .externalAccountRequired, .userActionRequired: return 403
        case .rateLimited: return 429
        case .alreadyReplaced: return 409
        case .serverInternal: return 500
        default: return 400
        }
    }

    /// The problem document (RFC 7807 with ACME's members).
    public var json: [String: Any] {
        var object: [String: Any] = ["type": type, "detail": detail, "status": status]
        if let algorithms { object["algorithms"] = algorithms }
        if let identifier { object["identifier"] = identifier.json }
        if !subproblems.isEmpty { object["subproblems"] = subproblems.map(\.json) }
        return object
    }

    /// The nonce problem, worded as Pebble words it: acme.sh recognises a bad nonce by this text alone.
    public static let badNonceDetail = "JWS has an invalid anti-replay nonce"
}
