import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOSSL
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime
import SignetAuthority
import SignetKeys
import SignetOpenAPI
import SwiftASN1
import X509

/// The one client of Signet's REST API, generated from api/openapi.yaml (swift-openapi-generator's client over
/// AsyncHTTPClient). The in-cluster controller and the CLI use it alike; they differ only in the bearer token they
/// present (a rotating projected service-account token, or an API token) and in whether they act for a namespace.
public final class SignetClient: Sendable {
    /// What went wrong, with the HTTP status when Signet answered (its problem's title and detail in the text).
    public struct Failure: Error, CustomStringConvertible {
        public let status: Int?
        public let description: String

        public init(status: Int?, description: String) {
            self.status = status
            self.description = description
        }
    }

    /// The server's URL without a trailing slash.
    public let base: String
    let client: Client
    let http: HTTPClient

    /// `token` is asked for before every request (nil: none is sent); `caFile` verifies Signet's certificate (nil: the
    /// system's trust store).
    public init(url: String, caFile: String?, token: @escaping @Sendable () throws -> String?) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile)) }
        base = url.hasSuffix("/") ? String(url.dropLast()) : url
        guard let serverURL = URL(string: base) else {
            throw Failure(status: nil, description: "'\(url)' is not a URL")
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        client = Client(
            serverURL: serverURL, configuration: .init(dateTranscoder: RFC3339DateTranscoder()),
            transport: AsyncHTTPClientTransport(configuration: .init(client: http, timeout: .seconds(30))),
            middlewares: [Authentication(token: token), Problems(base: base)]
        )
    }

    public func shutdown() async throws { try await http.shutdown() }

    // MARK: Certificates

    /// Signs a CSR (for `namespace` when the caller is a controller); the answer comes only after Signet has recorded
    /// the certificate. The names are the CSR's when none are given.
    public func issue(
        csrPEM: String, dnsNames: [String] = [], ipAddresses: [String] = [], duration: String?,
        profile: CertificateProfile, namespace: String?
    ) async throws -> Components.Schemas.IssuedCertificate {
        let body = Components.Schemas.IssueRequest(
            csr: csrPEM, dnsNames: dnsNames.isEmpty ? nil : dnsNames,
            ipAddresses: ipAddresses.isEmpty ? nil : ipAddresses,
            duration: duration, profile: Components.Schemas.Profile(rawValue: profile.rawValue)
        )
        return try await call {
            try await client.issueCertificate(headers: .init(signetOnBehalfOf: namespace), body: .json(body)).created
                .body.json
        }
    }

    /// The chain (leaf and intermediates, PEM) for a CSR that Kubernetes holds as a request object made at
    /// `requestedAt`: the certificate Signet already issued for the CSR's key since then (an attempt interrupted after
    /// Signet answered), or a new one. One request, one certificate, however often it is retried.
    public func issueOnce(
        csrPEM: String, profile: CertificateProfile, durationSeconds: Int64?, namespace: String, requestedAt: Date?
    ) async throws -> String {
        let csr = try InspectedRequest(pem: csrPEM)
        // Only a certificate for exactly this request's names is this request's; another request for the same key
        // (a renewal that keeps its key, with other names) gets its own.
        let asked = Set(
            csr.requestedDNSNames.map { $0.lowercased() } + csr.requestedIPAddresses.map(\.description)
                + csr.requestedURIs.compactMap { try? URIRules.validate($0) })
        if let requestedAt,
            let earlier = try await issued(
                publicKeySHA256: csr.publicKey.sha256Fingerprint, namespace: namespace,
                issuedAfter: requestedAt.addingTimeInterval(-1)),
            Set(earlier.record.dnsNames + earlier.record.ipAddresses + (earlier.record.uris ?? [])) == asked
        {
            return earlier.chainPEM
        }
        return try await issue(
            csrPEM: csrPEM, duration: durationSeconds.map { "\($0)s" }, profile: profile, namespace: namespace
        ).chain
    }

    /// The newest valid certificate Signet issued for this public key (since `issuedAfter`, when given): how an
    /// issuance interrupted after Signet answered finds its certificate instead of asking for a second one.
    public func issued(
        publicKeySHA256: String, namespace: String?, issuedAfter: Date? = nil
    ) async throws -> (record: Components.Schemas.CertificateRecord, chainPEM: String)? {
        var query = Operations.ListCertificates.Input.Query(
            status: .valid, issuedAfter: issuedAfter, publicKeySHA256: publicKeySHA256)
        query.limit = 1
        guard let record = try await certificates(query, namespace: namespace).items.first else { return nil }
        return (record, try await chain(serial: record.serial, namespace: namespace))
    }

    /// One page of the caller's certificates (everyone's for an auditor).
    public func certificates(_ query: Operations.ListCertificates.Input.Query, namespace: String? = nil) async throws
        -> Components.Schemas.CertificatePage
    {
        try await call {
            try await client.listCertificates(query: query, headers: .init(signetOnBehalfOf: namespace)).ok.body.json
        }
    }

    /// The ledger's record of a certificate, as the caller may read it; nil when Signet has none it may see.
    public func record(serial: String, namespace: String? = nil) async throws -> Components.Schemas.CertificateRecord? {
        do {
            return try await call {
                try await client.getCertificate(
                    path: .init(serial: serial),
                    headers: .init(signetOnBehalfOf: namespace, accept: [.init(contentType: .json)])
                )
                .ok.body.json
            }
        } catch let failure as Failure where failure.status == 404 {
            return nil
        }
    }

    /// A certificate's chain (leaf and intermediates) as PEM.
    public func chain(serial: String, namespace: String? = nil) async throws -> String {
        try await call {
            let body = try await client.getCertificate(
                path: .init(serial: serial),
                headers: .init(
                    signetOnBehalfOf: namespace, accept: [.init(contentType: .applicationPemCertificateChain)])
            ).ok.body.applicationPemCertificateChain
            return try await String(collecting: body, upTo: 1 << 20)
        }
    }

    public func revoke(serial: String, reason: Components.Schemas.RevocationRequest.ReasonPayload?) async throws
        -> Components.Schemas.CertificateRecord
    {
        try await call {
            try await client.revokeCertificate(path: .init(serial: serial), body: .json(.init(reason: reason))).ok.body
                .json
        }
    }

    // MARK: The caller and the CA

    /// Who Signet takes the caller for (acting for `namespace`), and that policy: the check behind an issuer's Ready
    /// condition. Fails (403) when Signet has no policy for the namespace or does not list the caller as a controller.
    public func identity(namespace: String?) async throws -> Components.Schemas.Identity {
        try await call { try await client.getIdentity(headers: .init(signetOnBehalfOf: namespace)).ok.body.json }
    }

    /// The CA chain, intermediates then the root; fetched at most once an hour (it changes only when the CA is rotated).
    public func caChain() async throws -> [Certificate] {
        if let cached = await chainCache.current() { return cached }
        let text = try await call {
            try await String(
                collecting: try await client.getCAChain().ok.body.applicationPemCertificateChain, upTo: 1 << 20)
        }
        let fetched = try PEMFiles.certificates(in: text, source: "Signet's /v1/ca")
        await chainCache.store(fetched)
        return fetched
    }

    private let chainCache = ChainCache()

    /// The CRLs of the whole chain (PEM), as `ca.crl` holds them; nil when Signet has none (no root CRL configured).
    public func chainCRLs() async throws -> String? {
        do {
            return try await call {
                try await String(collecting: try await client.getChainCRLs().ok.body.applicationXPemFile, upTo: 4 << 20)
            }
        } catch let failure as Failure where failure.status == 404 {
            return nil
        }
    }

    // MARK: Plumbing

    /// Runs a call, turning every failure into a `Failure`: Signet's problems (read by `Problems` before the generated
    /// code sees the answer) with their status, and the transport's as "unreachable".
    private func call<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ClientError {
            if let failure = error.underlyingError as? Failure { throw failure }
            throw Failure(
                status: error.response.map { Int($0.status.code) },
                description: "Signet at \(base) is unreachable: \(error.underlyingError)")
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(status: nil, description: "Signet at \(base): \(error)")
        }
    }

    /// The bearer token on every request, asked for each time (a projected token rotates).
    struct Authentication: ClientMiddleware {
        let token: @Sendable () throws -> String?

        func intercept(
            _ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
            next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
        ) async throws -> (HTTPResponse, HTTPBody?) {
            var request = request
            request.headerFields[.userAgent] = "signet-client"
            if let token = try token() { request.headerFields[.authorization] = "Bearer \(token)" }
            return try await next(request, body, baseURL)
        }
    }

    /// Any answer of 400 or more becomes a `Failure` with Signet's problem (title and detail), so callers handle
    /// one error type whatever the operation.
    struct Problems: ClientMiddleware {
        let base: String

        func intercept(
            _ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
            next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
        ) async throws -> (HTTPResponse, HTTPBody?) {
            let (response, responseBody) = try await next(request, body, baseURL)
            guard response.status.code >= 400 else { return (response, responseBody) }
            var detail = response.status.reasonPhrase
            if let responseBody, let data = try? await Data(collecting: responseBody, upTo: 1 << 20),
                let problem = try? JSONDecoder().decode(Components.Schemas.Problem.self, from: data)
            {
                detail = problem.title + (problem.detail.map { ": \($0)" } ?? "")
                for item in problem.errors ?? [] { detail += "\n  - \(item)" }
            }
            throw Failure(
                status: response.status.code, description: "Signet answered \(response.status.code): \(detail)")
        }
    }
}

/// Signet's CA chain, kept for an hour.
actor ChainCache {
    private var chain: [Certificate]?
    private var fetched = ContinuousClock.now

    func current() -> [Certificate]? {
        guard let chain, ContinuousClock.now - fetched < .seconds(3600) else { return nil }
        return chain
    }

    func store(_ chain: [Certificate]) {
        self.chain = chain
        fetched = ContinuousClock.now
    }
}
