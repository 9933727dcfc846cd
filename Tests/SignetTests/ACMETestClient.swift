import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import SignetACME
import SignetAuthority
import SwiftASN1
import X509

/// An ACME client for tests, built the way cert-manager's (x/crypto/acme) works: GET the directory, nonces by HEAD
/// only, every request a JWS POST. Low level on purpose, so tests can send what no real client would.
final class ACMETestClient: @unchecked Sendable {
    // @unchecked: `directory` is JSON read once at creation and never changed.
    struct Reply: Sendable {
        let status: Int
        let headers: [String: [String]]
        let body: Data

        var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
        func header(_ name: String) -> String? { headers[name.lowercased()]?.first }
        var problemType: String? {
            (json["type"] as? String)?.replacingOccurrences(of: "urn:ietf:params:acme:error:", with: "")
        }
        var location: String? { header("Location") }
    }

    let http: HTTPClient
    let directoryURL: String
    let directory: [String: Any]
    let signer: JWSSigner
    /// The account URL (kid) once registered.
    let accountURL = LockedValue<String?>(nil)

    init(server: ServerProcess, directory name: String, key: JWSSigner.Key) async throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(server.rootCertificate)
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        directoryURL = server.url + "/acme/\(name)/directory"
        signer = try JWSSigner(key)
        let reply = try await Self.send(http, "GET", directoryURL, body: nil)
        directory = reply.json
    }

    deinit { try? http.syncShutdown() }

    func url(_ name: String) -> String { directory[name] as? String ?? "" }

    static func send(
        _ http: HTTPClient, _ method: String, _ url: String, body: Data?, contentType: String = "application/jose+json"
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        request.headers.add(name: "User-Agent", value: "signet-tests")
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(data: body))
        }
        let response = try await http.execute(request, timeout: .seconds(30))
        let buffer = try await response.body.collect(upTo: 1 << 20)
        var headers: [String: [String]] = [:]
        for header in response.headers { headers[header.name.lowercased(), default: []].append(header.value) }
        return Reply(status: Int(response.status.code), headers: headers, body: Data(buffer: buffer))
    }

    func raw(_ method: String, _ url: String, body: Data? = nil, contentType: String = "application/jose+json")
        async throws -> Reply
    {
        try await Self.send(http, method, url, body: body, contentType: contentType)
    }

    /// A nonce, by HEAD as cert-manager gets them.
    func nonce() async throws -> String {
        let reply = try await raw("HEAD", url("newNonce"))
        guard let nonce = reply.header("Replay-Nonce") else {
            throw ClientError("HEAD newNonce answered no Replay-Nonce")
        }
        return nonce
    }

    /// POSTs a JWS of `payload` (nil: POST-as-GET) to `url`, signed with the account (kid) once there is one.
    func post(
        _ url: String, _ payload: [String: Any]?, useJWK: Bool = false, nonce: String? = nil, omitNonce: Bool = false,
        signer: JWSSigner? = nil, extraHeader: [String: Any] = [:]
    ) async throws -> Reply {
        let payloadData = try payload.map { try JSONSerialization.data(withJSONObject: $0) }
        var chosenNonce = nonce
        if chosenNonce == nil, !omitNonce { chosenNonce = try await self.nonce() }
        let kid = useJWK ? nil : accountURL.value
        let body = try (signer ?? self.signer).sign(
            payload: payloadData, url: url, nonce: chosenNonce, keyID: kid, extraHeader: extraHeader)
        return try await raw("POST", url, body: body)
    }

    @discardableResult
    func register(_ payload: [String: Any] = ["termsOfServiceAgreed": true]) async throws -> Reply {
        let reply = try await post(url("newAccount"), payload, useJWK: true)
        if let location = reply.location, reply.status == 201 || reply.status == 200 { accountURL.set(location) }
        return reply
    }

    func order(_ names: [String], extra: [String: Any] = [:]) async throws -> Reply {
        var payload: [String: Any] = [
            "identifiers": names.map { ["type": IPAddress($0) == nil ? "dns" : "ip", "value": $0] }
        ]
        for (key, value) in extra { payload[key] = value }
        return try await post(url("newOrder"), payload)
    }

    /// Answers every pending challenge of `type` in the order's authorizations and waits until the order is ready.
    func authorize(_ order: Reply, type: String = "http-01") async throws {
        for authorization in order.json["authorizations"] as? [String] ?? [] {
            let authz = try await post(authorization, nil)
            guard authz.json["status"] as? String == "pending" else { continue }
            guard
                let challenge = (authz.json["challenges"] as? [[String: Any]])?.first(where: {
                    $0["type"] as? String == type
                }),
                let url = challenge["url"] as? String
            else { throw ClientError("no \(type) challenge in \(authz.text)") }
            let answer = try await post(url, [:])
            guard answer.status == 200 else { throw ClientError("challenge answer: \(answer.status) \(answer.text)") }
        }
        try await poll(order.location ?? "") { $0["status"] as? String != "pending" }
    }

    @discardableResult
    func poll(_ url: String, until done: ([String: Any]) -> Bool) async throws -> [String: Any] {
        for _ in 0..<100 {
            let reply = try await post(url, nil)
            if done(reply.json) { return reply.json }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ClientError("\(url) did not change in 10 s")
    }

    /// A CSR (DER, base64url) for `names` with a fresh P-256 key, or `key`.
    static func csr(
        _ names: [String], commonName: String? = nil, key: Certificate.PrivateKey = .init(P256.Signing.PrivateKey())
    ) throws -> String {
        let pem = try Fixtures.csr(
            key: key, commonName: commonName, dnsNames: names.filter { IPAddress($0) == nil },
            ipAddresses: names.filter { IPAddress($0) != nil })
        return Base64URL.encode(try PEMDocument(pemString: pem).derBytes)
    }

    struct ClientError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}

/// A value several tasks read and one sets.
final class LockedValue<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T { lock.withLock { stored } }
    func set(_ value: T) { lock.withLock { stored = value } }
    func update(_ change: (inout T) -> Void) { lock.withLock { change(&stored) } }
}
