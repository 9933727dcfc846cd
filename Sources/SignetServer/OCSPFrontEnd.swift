import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SignetAuthority

/// `POST /ocsp` (body: a DER OCSPRequest, `application/ocsp-request`) and `GET /ocsp/{base64 of the request}`
/// (RFC 6960 Appendix A, RFC 5019 §5), without authentication. OCSP's own failures are OCSP responses with status 200
/// (malformedRequest, unauthorized, tryLater), as clients expect; only what is not OCSP at all (another content type)
/// is an `application/problem+json`.
struct OCSPFrontEnd: Sendable {
    let responder: OCSPResponder
    let metrics: SignetMetrics

    /// A request about one certificate is about a hundred bytes; a few dozen certificates fit in this.
    static let maximumRequestSize = 16 * 1024

    func register(on router: Router<SignetRequestContext>) {
        router.post("ocsp") { request, _ in
            guard let type = request.headers[.contentType], type.lowercased().hasPrefix("application/ocsp-request")
            else {
                throw Problem(
                    "unsupported-media-type", "Unsupported Media Type", status: 415,
                    detail:
                        "POST /ocsp takes the DER OCSPRequest as application/ocsp-request, not \(request.headers[.contentType] ?? "no Content-Type")"
                )
            }
            guard let body = try? await request.body.collect(upTo: Self.maximumRequestSize) else { return malformed() }
            return await answer(Array(buffer: body))
        }
        router.get("ocsp/**") { request, _ in
            // The path is the request's base64, URL-escaped or not: clients differ in escaping '/', '+' and '=', and
            // some turn '+' into a space. The raw path is read, since routers may merge the '//' base64 can hold.
            let encoded = String(request.uri.path.dropFirst("/ocsp/".count))
            let text = (encoded.removingPercentEncoding ?? encoded).replacingOccurrences(of: " ", with: "+")
            let padded = text + String(repeating: "=", count: (4 - text.count % 4) % 4)
            guard text.count <= Self.maximumRequestSize * 2, let der = Data(base64Encoded: padded), !der.isEmpty else {
                return malformed()
            }
            return await answer(Array(der))
        }
    }

    private func answer(_ der: [UInt8]) async -> Response {
        let answer = await responder.respond(to: der)
        metrics.recordOCSPResponse(answer.outcome)
        var headers: HTTPFields = [.contentType: "application/ocsp-response"]
        if let validity = answer.validity {
            // Like the CRLs: caches may keep an answer a minute at most, never past its nextUpdate.
            let remaining = max(0, Int(validity.nextUpdate.timeIntervalSinceNow))
            headers[.cacheControl] = "public, max-age=\(min(60, remaining)), no-transform, must-revalidate"
            headers[.lastModified] = HTTPDate.format(validity.thisUpdate)
            headers[.expires] = HTTPDate.format(validity.nextUpdate)
        } else {
            headers[.cacheControl] = "no-store"
        }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.der)))
    }

    /// What is not a request at all (too large, not base64) never reaches the responder.
    private func malformed() -> Response {
        metrics.recordOCSPResponse("malformedRequest")
        return Response(
            status: .ok, headers: [.contentType: "application/ocsp-response", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: OCSPResponse.failure(.malformedRequest))))
    }
}
