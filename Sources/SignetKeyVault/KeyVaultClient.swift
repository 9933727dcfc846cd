import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SignetAuthority
import SignetHTTP
import SignetKeys

/// The few Key Vault keys operations Signet uses, with the retry rules Microsoft documents: exponential backoff
/// with jitter on 5xx, timeouts and dropped connections; `Retry-After` honoured on 429; one fresh token on 401.
public struct KeyVaultClient: Sendable {
    public struct Answer: Sendable {
        public let json: [String: any Sendable]
        /// Key Vault's id for the call, to join Signet's ledger with the vault's own logs.
        public let requestID: String?
    }

    /// What the client went through on the way to an answer, for metrics: every 429 it received, and every retry
    /// with its reason ("throttled", "server_error", "transport").
    public enum Event: Sendable, Equatable {
        case throttled
        case retried(reason: String)
    }
    public typealias Observer = @Sendable (Event) -> Void

    /// Key Vault's retries: five attempts, the transport's backoff and `Retry-After` rules.
    public static let defaultRetry = HTTPTransport.RetryPolicy(attempts: 5)

    public let vaultURL: String
    public let apiVersion: String
    public let credential: EntraCredential
    let http: HTTPClient
    let retry: HTTPTransport.RetryPolicy
    let observer: Observer?
    let logger: Logger

    public init(
        vaultURL: String, apiVersion: String = "7.6", credential: EntraCredential, http: HTTPClient,
        retry: HTTPTransport.RetryPolicy = KeyVaultClient.defaultRetry, observer: Observer? = nil, logger: Logger
    ) {
        self.vaultURL = vaultURL.hasSuffix("/") ? String(vaultURL.dropLast()) : vaultURL
        self.apiVersion = apiVersion
        self.credential = credential
        self.http = http
        self.retry = retry
        self.observer = observer
        self.logger = logger
    }

    /// The same client with another retry policy (readiness probes want one quick attempt).
    public func with(retry: HTTPTransport.RetryPolicy) -> KeyVaultClient {
        KeyVaultClient(
            vaultURL: vaultURL, apiVersion: apiVersion, credential: credential, http: http, retry: retry,
            observer: observer, logger: logger)
    }

    public func getKey(name: String, version: String?) async throws -> Answer {
        try await call(.GET, "/keys/\(name)" + (version.map { "/\($0)" } ?? ""), body: nil)
    }

    public func createKey(name: String, parameters: [String: any Sendable]) async throws -> Answer {
        try await call(.POST, "/keys/\(name)/create", body: parameters)
    }

    public func sign(name: String, version: String, algorithm: String, digest: [UInt8]) async throws -> Answer {
        try await call(
            .POST, "/keys/\(name)/\(version)/sign", body: ["alg": algorithm, "value": Base64URL.encode(digest)])
    }

    private func call(_ method: HTTPMethod, _ path: String, body: [String: any Sendable]?) async throws -> Answer {
        let payload = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        let transport = HTTPTransport(http: http, retry: retry, logger: logger)
        let answer: HTTPTransport.Answer
        do {
            answer = try await transport.send(
                {
                    var request = HTTPClientRequest(url: "\(vaultURL)\(path)?api-version=\(apiVersion)")
                    request.method = method
                    request.headers.add(name: "Authorization", value: "Bearer \(try await credential.token())")
                    if let payload {
                        request.headers.add(name: "Content-Type", value: "application/json")
                        request.body = .bytes(ByteBuffer(data: payload))
                    }
                    return request
                }, transient: { [408, 500, 502, 503, 504].contains($0) || (506...599).contains($0) },
                maximumBody: 1 << 20,
                refresh: { headers in
                    // A stale token or another tenant: take the tenant from the challenge and get a new token once.
                    if let challenge = headers.first(name: "WWW-Authenticate"),
                        let tenant = Self.tenant(fromChallenge: challenge)
                    {
                        await credential.adoptChallenge(tenant: tenant)
                    }
                    _ = try await credential.token(refresh: true)
                },
                onRetry: { reason in
                    if reason == .throttled { observer?(.throttled) }
                    observer?(.retried(reason: reason.rawValue))
                })
        } catch let error as HTTPTransportError {
            throw KeyVaultError.unreachable(error.description)
        }
        let object = (try? JSONSerialization.jsonObject(with: answer.body)) as? [String: any Sendable] ?? [:]
        switch answer.status.code {
        case 200..<300:
            return Answer(json: object, requestID: answer.headers.first(name: "x-ms-request-id"))
        case 429:
            observer?(.throttled)  // every 429 counts, the one that ends the attempts too
            throw KeyVaultError.throttled(Self.describe(object, answer.status))
        case 408, 500, 502, 503, 504, 506...599:
            throw KeyVaultError.unavailable(Self.describe(object, answer.status))
        default:
            throw KeyVaultError.refused(status: Int(answer.status.code), Self.describe(object, answer.status))
        }
    }

    static func tenant(fromChallenge challenge: String) -> String? {
        for part in challenge.dropFirst("Bearer ".count).split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map {
                $0.trimmingCharacters(in: CharacterSet(charactersIn: " \""))
            }
            if pair.count == 2, pair[0] == "authorization" || pair[0] == "authorization_uri" {
                return URL(string: pair[1])?.pathComponents.dropFirst().first
            }
        }
        return nil
    }

    static func describe(_ object: [String: any Sendable], _ status: HTTPResponseStatus) -> String {
        if let error = object["error"] as? [String: any Sendable] {
            return "\(error["code"] as? String ?? "Error"): \(error["message"] as? String ?? "")"
        }
        return "HTTP \(status.code)"
    }
}

public enum KeyVaultError: SignerFailure, Equatable, CustomStringConvertible {
    case unreachable(String)
    case throttled(String)
    case unavailable(String)
    case refused(status: Int, String)
    case invalidAnswer(String)
    case wrongSignature(String)

    public var failureKind: String {
        switch self {
        case .unreachable: "unreachable"
        case .throttled: "throttled"
        case .unavailable: "unavailable"
        case .refused: "refused"
        case .invalidAnswer: "invalid_answer"
        case .wrongSignature: "wrong_signature"
        }
    }

    public var description: String {
        switch self {
        case .unreachable(let what): "Key Vault unreachable (\(what))"
        case .throttled(let what): "Key Vault kept throttling (\(what))"
        case .unavailable(let what): "Key Vault unavailable (\(what))"
        case let .refused(status, what): "Key Vault refused the request: \(status) \(what)"
        case .invalidAnswer(let what): "Key Vault answered something unexpected: \(what)"
        case .wrongSignature(let what):
            "Key Vault returned a signature that does not verify with the key's public key (\(what)); it was discarded"
        }
    }
}
