import HTTPTypes
import Hummingbird
import NIOCore
import SignetAuthority
import SignetLedger

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `GET /crl/{issuer}.crl` (DER, `application/pkix-crl`, what a cRLDistributionPoints URL must answer) and
/// `GET /crl/{issuer}.pem`, without authentication; `{issuer}` is the CA's key identifier in hexadecimal (the whole
/// chain's, as `ca.crl` holds them, is the API's `GET /v1/ca/crls`). Caches may keep an answer for a minute, never past
/// nextUpdate.
struct CRLFrontEnd: Sendable {
    let publisher: CRLPublisher

    func register(on router: Router<SignetRequestContext>) {
        router.get("crl/:file") { _, context in
            let file = context.parameters.get("file") ?? ""
            let (name, format) =
                file.hasSuffix(".crl")
                ? (String(file.dropLast(4)), "der")
                : file.hasSuffix(".pem") ? (String(file.dropLast(4)), "pem") : ("", "")
            if name.lowercased() == publisher.rootKeyID, let root = try publisher.rootCRL() {
                return Self.answer(
                    der: root.der, thisUpdate: root.thisUpdate, nextUpdate: root.nextUpdate, pem: format == "pem")
            }
            guard name.lowercased() == publisher.issuerKeyID, !format.isEmpty else {
                throw Problem(
                    "not-found", "No such CRL", status: 404,
                    detail:
                        "CRLs are at /crl/\(publisher.issuerKeyID).crl (DER) and /crl/\(publisher.issuerKeyID).pem (the whole chain's: /v1/ca/crls)"
                )
            }
            let crl = try await publisher.current()
            return Self.answer(
                der: crl.der, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate, pem: format == "pem")
        }
    }

    static func answer(der: [UInt8], thisUpdate: Date, nextUpdate: Date, pem: Bool) -> Response {
        pem
            ? answer(
                ByteBuffer(string: PEM.encode(der, type: "X509 CRL")), type: "application/x-pem-file",
                thisUpdate: thisUpdate, nextUpdate: nextUpdate)
            : answer(
                ByteBuffer(bytes: der), type: "application/pkix-crl", thisUpdate: thisUpdate, nextUpdate: nextUpdate)
    }

    private static func answer(_ body: ByteBuffer, type: String, thisUpdate: Date, nextUpdate: Date) -> Response {
        let remaining = max(0, Int(nextUpdate.timeIntervalSinceNow))
        let headers: HTTPFields = [
            .contentType: type,
            .cacheControl: "public, max-age=\(min(60, remaining))",
            .lastModified: HTTPDate.format(thisUpdate),
            .expires: HTTPDate.format(nextUpdate),
        ]
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: body))
    }
}

/// IMF-fixdate (RFC 9110 §5.6.7), as Last-Modified and Expires carry it.
enum HTTPDate {
    static func format(_ date: Date) -> String {
        let utc = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: date)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"],
            months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int?) -> String { value.map { $0 < 10 ? "0\($0)" : "\($0)" } ?? "00" }
        return
            "\(days[(utc.weekday ?? 1) - 1]), \(two(utc.day)) \(months[(utc.month ?? 1) - 1]) \(utc.year ?? 1970) \(two(utc.hour)):\(two(utc.minute)):\(two(utc.second)) GMT"
    }
}
