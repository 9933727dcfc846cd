import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SignetAuthority
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

    public struct RetryPolicy: Sendable {
        public var attempts = 5
        public var baseDelay: Duration = .milliseconds(200)
        public var maximumDelay: Duration = .seconds(5)
        public var timeout: TimeAmount = .seconds(10)
        public init() {}
    }

    public let vaultURL: String
    public let apiVersion: String
    public let credential: EntraCredential
    let http: HTTPClient
    let retry: RetryPolicy
    let observer: Observer?
    let logger: Logger

    public init(
        vaultURL: String, apiVersion: String = "7.6", credential: EntraCredential, http: HTTPClient,
        retry: RetryPolicy = .init(), observer: Observer? = nil, logger: Logger
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
    public func with(retry: RetryPolicy) -> KeyVaultClient {
        KeyVaultClient(vaultURL: vaultURL, apiVersion: apiVersion, credential: credential, http: http, retry: retry, observer: observer, logger: logger)
    }

    public func getKey(name: String, version: String?) async throws -> Answer {
        try await call(.GET, "/keys/\(name)" + (version.map { "/\($0)" } ?? ""), body: nil)
    }

    public func createKey(name: String, parameters: [String: any Sendable]) async throws -> Answer {
        try await call(.POST, "/keys/\(name)/create", body: parameters)
    }

    public func sign(name: String, version: String, algorithm: String, digest: [UInt8]) async throws -> Answer {
        try await call(.POST, "/keys/\(name)/\(version)/sign", body: ["alg": algorithm, "value": Base64URL.encode(digest)])
    }

    private func call(_ method: HTTPMethod, _ path: String, body: [String: any Sendable]?) async throws -> Answer {
        let payload = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        var refreshedToken = false
        var attempt = 0
        while true {
            attempt += 1
            var request = HTTPClientRequest(url: "\(vaultURL)\(path)?api-version=\(apiVersion)")
            request.method = method
            request.headers.add(name: "Authorization", value: "Bearer \(try await credential.token())")
            if let payload {
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(data: payload))
            }
            let outcome: (HTTPResponseStatus, HTTPHeaders, Data)
            do {
                let response = try await http.execute(request, timeout: retry.timeout)
                outcome = (response.status, response.headers, Data(buffer: try await response.body.collect(upTo: 1 << 20)))
            } catch {
                // Timeouts, refused and dropped connections: transient until the attempts run out.
                guard attempt < retry.attempts else { throw KeyVaultError.unreachable("\(method) \(path): \(error)") }
                observer?(.retried(reason: "transport"))
                try await Task.sleep(for: backoff(attempt))
                continue
            }
            let (status, headers, data) = outcome
            let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: any Sendable] ?? [:]
            switch status.code {
            case 200..<300:
                return Answer(json: object, requestID: headers.first(name: "x-ms-request-id"))
            case 401 where !refreshedToken:
                // A stale token or another tenant: take the tenant from the challenge and get a new token once.
                if let challenge = headers.first(name: "WWW-Authenticate"), let tenant = Self.tenant(fromChallenge: challenge) {
                    await credential.adoptChallenge(tenant: tenant)
                }
                _ = try await credential.token(refresh: true)
                refreshedToken = true
                attempt -= 1
                continue
            case 408, 429, 500, 502, 503, 504, 506...599:
                if status.code == 429 { observer?(.throttled) }
                guard attempt < retry.attempts else {
                    throw status.code == 429 ? KeyVaultError.throttled(Self.describe(object, status)) : KeyVaultError.unavailable(Self.describe(object, status))
                }
                let delay = status.code == 429 ? retryAfter(headers) ?? backoff(attempt) : backoff(attempt)
                observer?(.retried(reason: status.code == 429 ? "throttled" : "server_error"))
                logger.debug("Key Vault asked to retry", metadata: ["status": "\(status.code)", "delay": "\(delay)", "path": "\(path)"])
                try await Task.sleep(for: delay)
            default:
                throw KeyVaultError.refused(status: Int(status.code), Self.describe(object, status))
            }
        }
    }

    /// Exponential backoff with full jitter, capped.
    func backoff(_ attempt: Int) -> Duration {
        let ceiling = min(retry.maximumDelay, retry.baseDelay * (1 << min(attempt - 1, 10)))
        let milliseconds = Int64(Double(ceiling.components.seconds * 1000 + ceiling.components.attoseconds / 1_000_000_000_000_000) * Double.random(in: 0.5...1))
        return .milliseconds(milliseconds)
    }

    func retryAfter(_ headers: HTTPHeaders) -> Duration? {
        if let ms = headers.first(name: "retry-after-ms").flatMap(Double.init) ?? headers.first(name: "x-ms-retry-after-ms").flatMap(Double.init) {
            return min(.milliseconds(Int64(ms)), .seconds(60))
        }
        guard let seconds = headers.first(name: "Retry-After").flatMap(Double.init) else { return nil }
        return min(.milliseconds(Int64(seconds * 1000)), .seconds(60))
    }

    static func tenant(fromChallenge challenge: String) -> String? {
        for part in challenge.dropFirst("Bearer ".count).split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \"")) }
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
        case .wrongSignature(let what): "Key Vault returned a signature that does not verify with the key's public key (\(what)); it was discarded"
        }
    }
}
