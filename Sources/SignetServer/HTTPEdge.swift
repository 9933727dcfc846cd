import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import SignetAuthority
import SignetLogging
import SwiftASN1
import X509

/// The request context: Hummingbird's core storage plus the connection, from which the client certificate of
/// a mutual-TLS connection is read.
public struct SignetRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    public var maxUploadSize: Int { APIEdgeMiddleware.maximumBodySize }

    func clientCertificate() async -> Certificate? {
        guard let peer = try? await channel.nioSSL_peerCertificate().get(), let der = try? peer.toDERBytes() else {
            return nil
        }
        return try? Certificate(derEncoded: der)
    }
}

/// The outermost middleware: bounds request bodies, captures credentials for the handlers, and turns every
/// error, from any layer, into an `application/problem+json` answer.
public struct APIEdgeMiddleware: RouterMiddleware {
    public typealias Context = SignetRequestContext
    /// No legitimate request is larger: a CSR for an RSA-4096 key with many names is a few kilobytes.
    public static let maximumBodySize = 64 * 1024

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        let requestID = Self.requestID()
        // Every log line written while this request is served carries its id (the logging system's metadata
        // provider reads it), whichever logger writes it.
        return try await RequestIdentity.$current.withValue(requestID) {
            try await handle(request, context: context, requestID: requestID, next: next)
        }
    }

    private func handle(
        _ request: Request, context: Context, requestID: String,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if request.uri.path.hasPrefix("/acme/") || request.uri.path == "/ocsp" || request.uri.path.hasPrefix("/ocsp/") {
            // ACME and OCSP answer in their own formats, with their own body limits (ACMEEdge, OCSPFrontEnd); only
            // paths outside every ACME directory fall through to the problems below.
            do {
                var response = try await next(request, context)
                response.headers[Self.requestIDHeader] = requestID
                return response
            } catch {
                var answer = Self.response(
                    Self.problem(for: error, method: request.method.rawValue, path: request.uri.path))
                answer.headers[Self.requestIDHeader] = requestID
                return answer
            }
        }
        do {
            var request = request
            if let declared = request.headers[.contentLength].flatMap(Int.init), declared > Self.maximumBodySize {
                throw Self.tooLarge
            }
            do {
                _ = try await request.collectBody(upTo: Self.maximumBodySize)
            } catch let error as HTTPError where error.status == .contentTooLarge {
                throw Self.tooLarge
            }
            let onBehalfOf = request.headers[Self.onBehalfOfHeader]
            if let onBehalfOf, !KubernetesNames.isLabel(onBehalfOf) {
                throw Problem(
                    "invalid-header", "Invalid header", status: 400,
                    detail:
                        "Signet-On-Behalf-Of must be a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)"
                )
            }
            let credentials = PresentedCredentials(
                authorization: request.headers[.authorization],
                clientCertificate: await context.clientCertificate(),
                onBehalfOf: onBehalfOf,
                sourceAddress: context.channel.remoteAddress?.ipAddress
            )
            var response = try await PresentedCredentials.$current.withValue(credentials) {
                try await next(request, context)
            }
            // The OpenAPI runtime percent-encodes header values as URI components; a Location is a URI reference
            // and must keep its slashes.
            if let location = response.headers[.location], let decoded = location.removingPercentEncoding {
                response.headers[.location] = decoded
            }
            response.headers[Self.requestIDHeader] = requestID
            return response
        } catch {
            var problem = Self.problem(for: error, method: request.method.rawValue, path: request.uri.path)
            problem.requestId = requestID
            if problem.status >= 500 || problem.internalCause != nil {
                context.logger.error(
                    "request failed",
                    metadata: [
                        "requestId": "\(requestID)", "method": "\(request.method.rawValue)",
                        "path": "\(request.uri.path)",
                        "status": "\(problem.status)", "error": "\(problem.internalCause ?? "\(error)")",
                    ])
            }
            var answer = Self.response(problem)
            answer.headers[Self.requestIDHeader] = requestID
            return answer
        }
    }

    static let requestIDHeader = HTTPField.Name("Signet-Request-Id")!
    static let onBehalfOfHeader = HTTPField.Name("Signet-On-Behalf-Of")!

    /// 16 random hex digits: enough to find one request in a log.
    static func requestID() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 16).leftPadded(to: 16)
    }

    static let tooLarge = Problem(
        "body-too-large", "Request body too large", status: 413,
        detail: "request bodies are limited to \(maximumBodySize) bytes")

    /// The methods each path of api/openapi.yaml declares (DeployTests checks this table against the document).
    public static let declaredMethods: [(template: [String], methods: [String])] = [
        (["v1", "certificates"], ["GET", "POST"]),
        (["v1", "certificates", "{serial}"], ["GET"]),
        (["v1", "certificates", "{serial}", "revoke"], ["POST"]),
        (["v1", "managed-certificates"], ["GET", "POST"]),
        (["v1", "managed-certificates", "{name}"], ["DELETE", "GET", "PATCH"]),
        (["v1", "managed-certificates", "{name}", "renew"], ["POST"]),
        (["v1", "identity"], ["GET"]),
        (["v1", "ca", "crls"], ["GET"]),
        (["v1", "ca"], ["GET"]),
        (["healthz"], ["GET"]),
        (["readyz"], ["GET"]),
        (["metrics"], ["GET"]),
    ]

    /// The methods `path` declares, if it is one of the API's paths.
    static func allowedMethods(for path: String) -> [String]? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        return declaredMethods.first { entry in
            entry.template.count == segments.count
                && zip(entry.template, segments).allSatisfy { template, segment in
                    template.hasPrefix("{") || template == segment
                }
        }?.methods
    }

    static func problem(for error: any Error, method: String, path: String) -> Problem {
        if let httpError = error as? HTTPError, httpError.status == .notFound, let allowed = allowedMethods(for: path),
            !allowed.contains(method)
        {
            return Problem(
                "method-not-allowed", "Method Not Allowed", status: 405,
                detail: "\(path) answers \(allowed.joined(separator: ", ")), not \(method)",
                headers: ["Allow": allowed.joined(separator: ", ")]
            )
        }
        if let httpError = error as? HTTPError {
            let status = Int(httpError.status.code)
            let slug = status == 404 ? "not-found" : status == 405 ? "method-not-allowed" : "http-error"
            let detail =
                httpError.body
                ?? (status == 404
                    ? "no resource at \(method) \(path)" : "\(method) \(path): \(httpError.status.reasonPhrase)")
            return Problem(slug, httpError.status.reasonPhrase, status: status, detail: detail)
        }
        return Problem(error)
    }

    static func response(_ problem: Problem) -> Response {
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        for (name, value) in problem.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        let body =
            (try? JSONEncoder().encode(problem))
            ?? Data(#"{"type":"about:blank","title":"Internal error","status":500}"#.utf8)
        return Response(
            status: .init(code: problem.status),
            headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body))
        )
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
