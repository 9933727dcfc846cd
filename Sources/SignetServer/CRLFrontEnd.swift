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
/// `GET /crl/{issuer}.pem`, without authentication; `{issuer}` is the CA's key identifier in hexadecimal. Also
/// `GET /crl/chain.pem`: the CRLs of the whole chain (the intermediate's, then the root's), exactly what `ca.crl` holds,
/// which is how the in-cluster controller fills the Secrets it writes. Caches may keep an answer for a minute, never
/// past the earliest nextUpdate.
struct CRLFrontEnd: Sendable {
    let publisher: CRLPublisher

    func register(on router: Router<SignetRequestContext>) {
        router.get("crl/:file") { _, context in
            let file = context.parameters.get("file") ?? ""
            if file == "chain.pem" { return try await chain() }
            let (name, format) = file.hasSuffix(".crl") ? (String(file.dropLast(4)), "der") : file.hasSuffix(".pem") ? (String(file.dropLast(4)), "pem") : ("", "")
            if name.lowercased() == publisher.rootKeyID, let root = try publisher.rootCRL() {
                return Self.answer(der: root.der, thisUpdate: root.thisUpdate, nextUpdate: root.nextUpdate, pem: format == "pem")
            }
            guard name.lowercased() == publisher.issuerKeyID, !format.isEmpty else {
                throw Problem("not-found", "No such CRL", status: 404,
                              detail: "CRLs are at /crl/\(publisher.issuerKeyID).crl (DER), /crl/\(publisher.issuerKeyID).pem and /crl/chain.pem (the whole chain's)")
            }
            let crl = try await publisher.current()
            return Self.answer(der: crl.der, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate, pem: format == "pem")
        }
    }

    /// Both CRLs or none: a chain missing one CA's CRL fails every client of a gateway that checks them all.
    private func chain() async throws -> Response {
        guard let chain = try await publisher.chain() else {
            throw Problem("not-found", "No root CRL", status: 404,
                          detail: "the root's CRL is not configured (crl.rootCRL); without it no ca.crl is delivered, since half a chain's CRLs fails every client")
        }
        return Self.answer(pem: chain.pem, thisUpdate: chain.thisUpdate, nextUpdate: chain.nextUpdate)
    }

    static func answer(der: [UInt8], thisUpdate: Date, nextUpdate: Date, pem: Bool) -> Response {
        pem ? answer(pem: PEM.encode(der, type: "X509 CRL"), thisUpdate: thisUpdate, nextUpdate: nextUpdate)
            : answer(ByteBuffer(bytes: der), type: "application/pkix-crl", thisUpdate: thisUpdate, nextUpdate: nextUpdate)
    }

    static func answer(pem: String, thisUpdate: Date, nextUpdate: Date) -> Response {
        answer(ByteBuffer(string: pem), type: "application/x-pem-file", thisUpdate: thisUpdate, nextUpdate: nextUpdate)
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
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"], months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int?) -> String { value.map { $0 < 10 ? "0\($0)" : "\($0)" } ?? "00" }
        return "\(days[(utc.weekday ?? 1) - 1]), \(two(utc.day)) \(months[(utc.month ?? 1) - 1]) \(utc.year ?? 1970) \(two(utc.hour)):\(two(utc.minute)):\(two(utc.second)) GMT"
    }
}
