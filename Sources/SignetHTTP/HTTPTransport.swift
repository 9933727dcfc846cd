import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// The one outbound HTTP transport of Signet's clients of other services (Azure Key Vault, Kubernetes API servers):
/// a bounded number of attempts with capped, jittered exponential backoff for dropped connections, timeouts and the
/// statuses a service calls transient; `Retry-After` (and Azure's millisecond forms) honoured; one credential refresh
/// on 401. What an answer means is the caller's: this returns the last answer, or throws `HTTPTransportError` when
/// the service could not be reached at all.
public struct HTTPTransport: Sendable {
    public struct RetryPolicy: Sendable {
        public var attempts: Int
        public var baseDelay: Duration = .milliseconds(200)
        public var maximumDelay: Duration = .seconds(5)
        /// The longest `Retry-After` waited for; a longer one is cut to this.
        public var maximumRetryAfter: Duration = .seconds(60)
        public var timeout: TimeAmount = .seconds(10)

        public init(attempts: Int) { self.attempts = attempts }

        /// Exponential backoff with jitter (between half and all of the doubling delay), capped.
        public func backoff(_ attempt: Int) -> Duration {
            let ceiling = min(maximumDelay, baseDelay * (1 << min(attempt - 1, 10)))
            let milliseconds = Double(ceiling.components.seconds) * 1000 + Double(ceiling.components.attoseconds) / 1e15
            return .milliseconds(Int64(milliseconds * Double.random(in: 0.5...1)))
        }

        /// The wait a service asked for: `retry-after-ms`, `x-ms-retry-after-ms` or `Retry-After` (seconds), capped.
        public func retryAfter(_ headers: HTTPHeaders) -> Duration? {
            if let ms = headers.first(name: "retry-after-ms").flatMap(Double.init)
                ?? headers.first(name: "x-ms-retry-after-ms").flatMap(Double.init)
            {
                return min(.milliseconds(Int64(ms)), maximumRetryAfter)
            }
            guard let seconds = headers.first(name: "Retry-After").flatMap(Double.init) else { return nil }
            return min(.milliseconds(Int64(seconds * 1000)), maximumRetryAfter)
        }
    }

    /// Why an attempt is made again, for the caller's metrics.
    public enum RetryReason: String, Sendable {
        case transport, throttled, serverError = "server_error"
    }

    public struct Answer: Sendable {
        public let status: HTTPResponseStatus
        public let headers: HTTPHeaders
        public let body: Data
    }

    public let http: HTTPClient
    public let retry: RetryPolicy
    let logger: Logger

    public init(http: HTTPClient, retry: RetryPolicy, logger: Logger) {
        self.http = http
        self.retry = retry
        self.logger = logger
    }

    /// The same transport with another retry policy (a readiness probe wants one quick attempt).
    public func with(retry: RetryPolicy) -> HTTPTransport { HTTPTransport(http: http, retry: retry, logger: logger) }

    /// Sends the request `make` builds (anew for every attempt, so a refreshed credential is used) until an answer
    /// that is not transient, or the attempts run out (then the last answer is returned). `transient` says which
    /// statuses are worth another attempt (429 always is); on the first 401, `refresh` renews the credential and the
    /// attempt does not count.
    public func send(
        _ make: () async throws -> HTTPClientRequest, transient: (UInt) -> Bool, maximumBody: Int = 8 << 20,
        refresh: ((HTTPHeaders) async throws -> Void)? = nil, onRetry: (RetryReason) -> Void = { _ in }
    ) async throws -> Answer {
        var attempt = 0
        var refreshed = false
        while true {
            attempt += 1
            let request = try await make()
            let answer: Answer
            do {
                let response = try await http.execute(request, timeout: retry.timeout)
                answer = Answer(
                    status: response.status, headers: response.headers,
                    body: Data(buffer: try await response.body.collect(upTo: maximumBody)))
            } catch {
                // Timeouts, refused and dropped connections: transient until the attempts run out.
                guard attempt < retry.attempts else {
                    throw HTTPTransportError(description: "\(request.method) \(request.url): \(error)")
                }
                onRetry(.transport)
                try await Task.sleep(for: retry.backoff(attempt))
                continue
            }
            let code = answer.status.code
            if code == 401, !refreshed, let refresh {
                try await refresh(answer.headers)
                refreshed = true
                attempt -= 1
                continue
            }
            guard code == 429 || transient(code), attempt < retry.attempts else { return answer }
            let delay =
                code == 429 ? retry.retryAfter(answer.headers) ?? retry.backoff(attempt) : retry.backoff(attempt)
            onRetry(code == 429 ? .throttled : .serverError)
            logger.debug(
                "the service asked to retry",
                metadata: ["status": "\(code)", "url": "\(request.url)", "delay": "\(delay)"])
            try await Task.sleep(for: delay)
        }
    }
}

/// The service could not be reached within the attempts.
public struct HTTPTransportError: Error, CustomStringConvertible {
    public let description: String
}
