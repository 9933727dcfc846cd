import AsyncHTTPClient
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import SignetAuthority
import SignetKeys
import SignetKubernetes
import SignetOpenAPI
import SwiftASN1
import X509

import Foundation

/// Signet's REST API as the controller uses it, authenticated with the controller's projected service-account token
/// (re-read as the kubelet rotates it) and naming the Certificate's namespace, whose policy Signet applies.
public final class SignetIssuer: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let status: Int?
        public let description: String
    }

    let base: String
    let tokenFile: RotatingTokenFile
    let http: HTTPClient

    public init(url: String, caFile: String?, tokenFile: String) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile)) }
        self.base = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.tokenFile = RotatingTokenFile(path: tokenFile)
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
    }

    public func shutdown() async throws { try await http.shutdown() }

    /// Signs a CSR for `namespace`; the answer comes only after Signet has recorded the certificate.
    public func issue(csrPEM: String, spec: CertificateSpec, namespace: String) async throws -> Components.Schemas.IssuedCertificate {
        try await issue(csrPEM: csrPEM, dnsNames: spec.dnsNames, ipAddresses: spec.ipAddresses, duration: spec.duration, profile: spec.profile,
                        namespace: namespace)
    }

    /// Signs a CSR for `namespace` with the names given, or the CSR's own when none are.
    public func issue(
        csrPEM: String, dnsNames: [String] = [], ipAddresses: [String] = [], duration: String?, profile: CertificateProfile, namespace: String
    ) async throws -> Components.Schemas.IssuedCertificate {
        let body = Components.Schemas.IssueRequest(
            csr: csrPEM, dnsNames: dnsNames.isEmpty ? nil : dnsNames, ipAddresses: ipAddresses.isEmpty ? nil : ipAddresses,
            duration: duration, profile: Components.Schemas.Profile(rawValue: profile.rawValue)
        )
        let data = try await send(.POST, "/v1/certificates", json: try JSONEncoder().encode(body), namespace: namespace)
        return try decode(Components.Schemas.IssuedCertificate.self, data)
    }

    /// The chain (leaf and intermediates, PEM) for a CSR that Kubernetes holds as a request object made at
    /// `requestedAt`: the certificate Signet already issued for the CSR's key since then (an attempt interrupted after
    /// Signet answered), or a new one. One request, one certificate, however often it is retried.
    public func issueOnce(
        csrPEM: String, profile: CertificateProfile, durationSeconds: Int64?, namespace: String, requestedAt: Date?
    ) async throws -> String {
        let csr = try CertificateSigningRequest(pemEncoded: csrPEM)
        if let requestedAt,
           let earlier = try await issued(publicKeySHA256: csr.publicKey.sha256Fingerprint, namespace: namespace, issuedAfter: requestedAt.addingTimeInterval(-1)) {
            return earlier.chainPEM
        }
        return try await issue(csrPEM: csrPEM, duration: durationSeconds.map { "\($0)s" }, profile: profile, namespace: namespace).chain
    }

    /// Who Signet takes the controller for when acting for `namespace`, and that namespace's policy: the check
    /// behind an issuer's Ready condition. Fails (403) when Signet has no policy for the namespace or does not list
    /// the controller.
    public func identity(namespace: String?) async throws -> Components.Schemas.Identity {
        try decode(Components.Schemas.Identity.self, try await send(.GET, "/v1/identity", namespace: namespace))
    }

    /// The newest valid certificate Signet issued for this public key (since `issuedAfter`, when given): how an
    /// issuance interrupted after Signet answered finds its certificate instead of asking for a second one.
    public func issued(
        publicKeySHA256: String, namespace: String, issuedAfter: Date? = nil
    ) async throws -> (record: Components.Schemas.CertificateRecord, chainPEM: String)? {
        var query = "status=valid&limit=1&publicKeySHA256=\(publicKeySHA256)"
        if let issuedAfter {
            let formatter = ISO8601DateFormatter()
            query += "&issuedAfter=" + (formatter.string(from: issuedAfter).addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
        }
        let data = try await send(.GET, "/v1/certificates?" + query, namespace: namespace)
        guard let record = try decode(Components.Schemas.CertificatePage.self, data).items.first else { return nil }
        let chain = try await send(.GET, "/v1/certificates/\(record.serial)", namespace: namespace, accept: "application/pem-certificate-chain")
        return (record, String(decoding: chain, as: UTF8.self))
    }

    /// The ledger's record of a certificate, as the namespace may read it; nil when Signet has none (or none this
    /// namespace may see).
    public func record(serial: String, namespace: String) async throws -> Components.Schemas.CertificateRecord? {
        do {
            return try decode(Components.Schemas.CertificateRecord.self, try await send(.GET, "/v1/certificates/\(serial)", namespace: namespace))
        } catch let failure as Failure where failure.status == 404 {
            return nil
        }
    }

    /// The CA chain, intermediates then the root; fetched at most once an hour (it changes only when the CA is rotated).
    public func caChain() async throws -> [Certificate] {
        if let cached = await chain.current() { return cached }
        let data = try await send(.GET, "/v1/ca", namespace: nil, accept: "application/pem-certificate-chain", authenticated: false)
        let fetched = try PEMFiles.certificates(in: String(decoding: data, as: UTF8.self), source: "Signet's /v1/ca")
        await chain.store(fetched)
        return fetched
    }

    private let chain = RootCache()

    /// The CRLs of the whole chain (PEM), as `ca.crl` holds them; nil when Signet has none (no root CRL configured).
    public func chainCRLs() async throws -> String? {
        do {
            let data = try await send(.GET, "/crl/chain.pem", namespace: nil, accept: "application/x-pem-file", authenticated: false)
            return String(decoding: data, as: UTF8.self)
        } catch let failure as Failure where failure.status == 404 {
            return nil
        }
    }

    private func send(_ method: HTTPMethod, _ path: String, json: Data? = nil, namespace: String?, accept: String = "application/json",
                      authenticated: Bool = true) async throws -> Data {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "Accept", value: accept)
        request.headers.add(name: "User-Agent", value: "signet-controller")
        if authenticated { request.headers.add(name: "Authorization", value: "Bearer \(try token())") }
        if let namespace { request.headers.add(name: "Signet-On-Behalf-Of", value: namespace) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: json))
        }
        let response: HTTPClientResponse
        let data: Data
        do {
            response = try await http.execute(request, timeout: .seconds(30))
            data = Data(buffer: try await response.body.collect(upTo: 8 << 20))
        } catch {
            throw Failure(status: nil, description: "Signet at \(base) is unreachable: \(error)")
        }
        guard (200..<300).contains(response.status.code) else {
            let problem = try? JSONDecoder().decode(Components.Schemas.Problem.self, from: data)
            let detail = problem.map { "\($0.title)" + ($0.detail.map { ": \($0)" } ?? "") } ?? response.status.reasonPhrase
            throw Failure(status: Int(response.status.code), description: "Signet answered \(response.status.code): \(detail)")
        }
        return data
    }

    private func token() throws -> String {
        do {
            return try tokenFile.current()
        } catch {
            throw Failure(status: nil, description: "cannot read the service-account token \(tokenFile.path)")
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(type, from: data)
    }
}
