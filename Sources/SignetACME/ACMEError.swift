/// An ACME error (RFC 8555 §6.7): its type in the `urn:ietf:params:acme:error:` namespace and a detail a client
/// can act on. Mapped to `application/problem+json` at the HTTP edge.
public struct ACMEError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case malformed, unauthorized, badNonce, badSignatureAlgorithm, badPublicKey, accountDoesNotExist
        case externalAccountRequired, rejectedIdentifier, unsupportedIdentifier, badCSR, orderNotReady, rateLimited
        case serverInternal, alreadyReplaced, alreadyRevoked, badRevocationReason
    }

    public var kind: Kind
    public var detail: String
    /// For `badSignatureAlgorithm`: the algorithms the server accepts (RFC 8555 §6.2).
    public var algorithms: [String]?

    public init(_ kind: Kind, _ detail: String, algorithms: [String]? = nil) {
        self.kind = kind
        self.detail = detail
        self.algorithms = algorithms
    }

    public var type: String { "urn:ietf:params:acme:error:" + kind.rawValue }
    public var description: String { "\(kind.rawValue): \(detail)" }
}
