import HTTPTypes
import OpenAPIRuntime
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetManaged

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// An RFC 9457 problem: what every error answer of Signet's API carries, as `application/problem+json`.
public struct Problem: Error, Codable, Sendable, Equatable {
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String?
    public var errors: [String]?
    /// The request's id, also in the `Signet-Request-Id` header and beside the full error in the server's log: what
    /// an operator searches for when the detail (which never carries another service's internals) is not enough.
    public var requestId: String?
    /// Headers the answer needs besides the body (WWW-Authenticate on 401, Retry-After on 503).
    public var headers: [String: String] = [:]
    /// The cause as the server saw it (a Key Vault or Kubernetes error): logged with the request id, never sent.
    public var internalCause: String?

    enum CodingKeys: String, CodingKey {
        case type, title, status, detail, errors, requestId
    }

    public static let typeBase = "https://signet.dev/problems/"

    public init(
        _ slug: String, _ title: String, status: Int, detail: String? = nil, errors: [String]? = nil,
        headers: [String: String] = [:]
    ) {
        self.type = Self.typeBase + slug
        self.title = title
        self.status = status
        self.detail = detail
        self.errors = errors.flatMap { $0.isEmpty ? nil : $0 }
        self.headers = headers
    }
}

/// The single mapping from Signet's error values to problems. Only the HTTP edge knows about status codes.
extension Problem {
    /// Any error as a problem: Signet's own by `known`, anything else a 500 whose cause stays in the log.
    public init(_ error: any Error) {
        self =
            Self.known(error)
            ?? Problem(
                "internal", "Internal error", status: 500,
                detail: "the server failed while handling the request; see its log")
    }

    /// The one list of Signet's error types and their problems; nil for an error that is not Signet's own.
    static func known(_ error: any Error) -> Problem? {
        var problem: Problem
        switch error {
        case let known as Problem:
            problem = known
        case let serverError as ServerError:
            problem = Problem(openAPIError: serverError)
        case let refusal as IssuanceRefusal:
            problem = Problem(refusal)
        case let error as AuthenticationError:
            problem = Problem(
                "unauthorized", "Authentication required", status: 401, detail: error.description,
                headers: ["WWW-Authenticate": #"Bearer realm="signet""#]
            )
        case let error as AuthorizationError:
            problem = Problem("forbidden", "Not allowed", status: 403, detail: error.description)
        case let error as LedgerError:
            switch error {
            case .invalidCursor:
                problem = Problem("invalid-query", "Invalid query", status: 400, detail: error.description)
            case .managedCertificateExists:
                problem = Problem("already-exists", "Already exists", status: 409, detail: error.description)
            case .secretTaken:
                problem = Problem(
                    "secret-owned-elsewhere", "The Secret has another owner", status: 409, detail: error.description)
            case .noSuchManagedCertificate:
                problem = Problem("not-found", "No such managed certificate", status: 404, detail: error.description)
            case .unavailable:
                problem = Problem(
                    "ledger-unavailable", "The ledger cannot be reached", status: 503,
                    detail: "\(error.description); nothing was recorded or issued; try again shortly",
                    headers: ["Retry-After": "5"])
            default: problem = Problem("ledger-error", "Ledger error", status: 500, detail: error.description)
            }
        case let error as SigningFailure:
            problem = Problem(
                "signer-unavailable", "The CA key could not sign", status: 503,
                detail: "\(error.signer) could not sign; nothing was issued; try again shortly",
                headers: ["Retry-After": "5"]
            )
            problem.internalCause = error.reason
        case let error as AuthenticationUnavailable:
            problem = Problem(
                "authentication-unavailable", "Credentials cannot be checked now", status: 503,
                detail: "the cluster that checks service-account tokens did not answer; try again shortly",
                headers: ["Retry-After": "5"]
            )
            problem.internalCause = error.cause
        case let limited as RateLimited:
            problem = Problem(
                "rate-limited", "Too many requests", status: 429, detail: limited.description,
                headers: ["Retry-After": String(limited.retryAfterSeconds)]
            )
        case let busy as AdmissionRefused:
            problem = Problem(
                "signer-busy", "The CA signer is at its limit", status: 503, detail: busy.description,
                headers: ["Retry-After": String(busy.retryAfterSeconds)]
            )
        case let refusal as ManagedCertificateRefusal:
            switch refusal {
            case .issuance(let inner): problem = Problem(inner)
            case .invalid:
                problem = Problem(
                    "invalid-managed-certificate", "Invalid managed certificate", status: 400,
                    detail: refusal.description)
            case .targetNotAllowed:
                problem = Problem(
                    "target-not-allowed", "Target outside policy", status: 403, detail: refusal.description)
            }
        case let error as DecodingError:
            problem = Problem("malformed-body", "Malformed request body", status: 400, detail: Self.describe(error))
        default:
            return nil
        }
        return problem
    }

    init(_ refusal: IssuanceRefusal) {
        switch refusal {
        case .request(let error):
            let slug =
                switch error {
                case .badSignature: "bad-csr-signature"
                case .unacceptableKey: "unacceptable-key"
                case .requestsCertificateAuthority: "ca-not-allowed"
                default: "bad-csr"
                }
            self = Problem(slug, "Unacceptable CSR", status: 400, detail: refusal.description)
        case .invalidNames:
            self = Problem(
                "invalid-name", "Invalid name", status: 400, detail: refusal.description,
                errors: refusal.offendingInputs)
        case .tooManyNames:
            self = Problem("too-many-names", "Too many names", status: 400, detail: refusal.description)
        case .namesDisagree, .noNames, .commonNameNotAmongNames:
            self = Problem("names-mismatch", "Inconsistent names", status: 400, detail: refusal.description)
        case .lifetime:
            self = Problem("invalid-duration", "Invalid duration", status: 400, detail: refusal.description)
        case .policy(let error):
            switch error {
            case .namesNotAllowed:
                self = Problem(
                    "names-not-allowed", "Names outside policy", status: 403, detail: refusal.description,
                    errors: refusal.offendingInputs)
            case .profileNotAllowed:
                self = Problem(
                    "profile-not-allowed", "Profile outside policy", status: 403, detail: refusal.description)
            case .lifetimeTooLong, .lifetimeTooShort, .lifetimeBeyondIssuer:
                self = Problem("invalid-duration", "Duration outside policy", status: 400, detail: refusal.description)
            case .invalidPattern:
                self = Problem("internal", "Invalid policy", status: 500, detail: refusal.description)
            case .identityReserved:
                self = Problem(
                    "identity-reserved", "Subject reserved for an identity", status: 403, detail: refusal.description)
            }
        }
    }

    /// Errors raised by the generated server code before a handler runs: undecodable JSON, unknown fields,
    /// wrong content types, bad parameters. A handler's own error arrives wrapped here too.
    init(openAPIError error: ServerError) {
        if let decoding = error.underlyingError as? DecodingError {
            self = Problem("malformed-body", "Malformed request", status: 400, detail: Self.describe(decoding))
            return
        }
        if !(error.underlyingError is ServerError), let known = Self.known(error.underlyingError) {
            self = known
            return
        }
        // No input means the request could not be turned into one (a parameter that is not what its schema says):
        // the caller's mistake, whatever the runtime calls it.
        if error.operationInput == nil, error.httpStatus.code >= 500 {
            self = Problem(
                "malformed-request", "Malformed request", status: 400,
                detail:
                    "a parameter of \(error.operationID) is not what the API description allows: \(error.underlyingError)"
            )
            return
        }
        let status = error.httpStatus.code
        if status == 415 || error.causeDescription.lowercased().contains("content type") {
            self = Problem(
                "unsupported-media-type", "Unsupported media type", status: 415, detail: error.causeDescription)
        } else if (400..<500).contains(status) {
            self = Problem("malformed-request", "Malformed request", status: status, detail: error.causeDescription)
        } else {
            self = Problem(
                "internal", "Internal error", status: 500,
                detail: "the server failed while handling the request; see its log")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, _):
            return "the required field '\(key.stringValue)' is missing"
        case .typeMismatch(let type, let context):
            return "field '\(path(context))' has the wrong type (expected \(type))"
        case .valueNotFound(_, let context):
            return "field '\(path(context))' is null"
        case .dataCorrupted(let context):
            if context.debugDescription.hasPrefix("Additional properties are disabled") {
                return "unknown field '\(path(context))'"
            }
            if context.codingPath.isEmpty {
                return "the body is not valid JSON"
            }
            return "field '\(path(context))' is invalid: \(context.debugDescription)"
        @unknown default:
            return "the body could not be decoded"
        }
    }
}

public enum AuthenticationError: Error, Equatable, CustomStringConvertible {
    case missing
    case malformed
    case unknownToken
    case revokedToken(String)
    case serviceAccount(String)

    public var description: String {
        switch self {
        case .serviceAccount(let why): why
        case .missing: "no credentials: send 'Authorization: Bearer <token>' (tokens come from 'signet token create')"
        case .malformed: "the Authorization header is not 'Bearer <token>'"
        case .unknownToken: "the bearer token is not known to this server"
        case .revokedToken(let name): "the token '\(name)' has been revoked"
        }
    }
}

public enum AuthorizationError: Error, Equatable, CustomStringConvertible {
    case readOnly(String)
    case managedCertificate(String, String)
    case notAController(String, String)
    case noNamespacePolicy(String, String)
    case notYours(String, String)

    public var description: String {
        switch self {
        case .readOnly(let name): "'\(name)' may read the ledger but has no names it may be issued"
        case let .managedCertificate(name, reason): "managed certificate '\(name)': \(reason)"
        case let .notAController(identity, namespace):
            "'\(identity)' may not ask on behalf of namespace '\(namespace)' (it is not among serviceAccounts.controllers)"
        case let .noNamespacePolicy(identity, namespace):
            "'\(identity)': namespace '\(namespace)' has no policy (serviceAccounts.namespaces), so nothing may be issued for it"
        case let .notYours(identity, requester):
            "'\(identity)' reads its own certificates, not those of '\(requester)'; an auditor's credential reads everything"
        }
    }
}

/// Service-account tokens cannot be checked (the cluster's API server does not answer): 503, not 401, since the
/// credential may well be good.
public struct AuthenticationUnavailable: Error, CustomStringConvertible {
    public let cause: String
    public var description: String { "the cluster could not check the token: \(cause)" }
}

/// The CA key failed to sign (a remote signer unreachable, a token removed). Nothing was recorded.
public struct SigningFailure: Error, CustomStringConvertible {
    /// Where the key is, in words a caller understands ("the CA key in Azure Key Vault").
    public var signer = "the CA key"
    public let reason: String
    public var description: String { "\(signer) could not sign: \(reason); nothing was issued" }
}
