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

/// The ACME benchmark's client loop, the same for every server: each of `clients` workers registers an ES256
/// account, then for `seconds` repeats the whole order flow — newOrder, read the authorization, answer its http-01
/// challenge, poll the authorization until valid, poll the order until ready, finalize, poll until valid, download
/// the chain — with a fresh name and a pre-made P-256 CSR each time. Nonces come from the previous answer's
/// Replay-Nonce, as real clients keep them. Prints one `RESULT` line: orders, seconds, p50/p99 of whole orders,
/// requests, errors.
func runACMELoad(directoryURL: String, caFile: String, clients: Int, seconds: Double, label: String) async throws {
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.trustRoots = .file(caFile)
    var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
    configuration.connectionPool = .init(
        idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(clients, 8))
    let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    do {
        try await load(http: http, directoryURL: directoryURL, clients: clients, seconds: seconds, label: label)
    } catch {
        try await http.shutdown()
        throw error
    }
    try await http.shutdown()
}

private func load(http: HTTPClient, directoryURL: String, clients: Int, seconds: Double, label: String) async throws {
    let object = try await ACMELoadClient.json(
        http.execute(HTTPClientRequest(url: directoryURL), timeout: .seconds(10)))
    let directory = ACMELoadClient.Directory(
        newNonce: object["newNonce"] as? String ?? "", newAccount: object["newAccount"] as? String ?? "",
        newOrder: object["newOrder"] as? String ?? ""
    )
    // CSRs are made before the clock starts: the client's own crypto is not what is measured.
    let csrCount = max(2000, clients * 400)
    let csrs = try (0..<min(csrCount, 20_000)).map { index in
        try ACMELoadClient.csr(host: "\(label)-\(index).bench.test")
    }
    let deadline = ContinuousClock.now + .seconds(seconds)
    let started = ContinuousClock.now
    let results = try await withThrowingTaskGroup(of: ACMELoadClient.Tally.self) { group in
        for worker in 0..<clients {
            group.addTask {
                var tally = ACMELoadClient.Tally()
                let client: ACMELoadClient
                do {
                    client = try await ACMELoadClient(http: http, directory: directory)
                } catch {
                    // A server that cannot register an account within the timeout fails this worker's share.
                    FileHandle.standardError.write(Data("account registration failed: \(error)\n".utf8))
                    tally.errors += 1
                    return tally
                }
                var index = worker
                while ContinuousClock.now < deadline {
                    let name = "\(label)-\(index % csrs.count).bench.test"
                    let begun = ContinuousClock.now
                    do {
                        try await client.order(name: name, csr: csrs[index % csrs.count], tally: &tally)
                        tally.latencies.append(ContinuousClock.now - begun)
                    } catch {
                        tally.errors += 1
                        if tally.errors <= 3 { FileHandle.standardError.write(Data("order failed: \(error)\n".utf8)) }
                    }
                    index += clients
                }
                return tally
            }
        }
        var all = ACMELoadClient.Tally()
        for try await tally in group {
            all.latencies += tally.latencies
            all.requests += tally.requests
            all.errors += tally.errors
        }
        return all
    }
    let elapsed = (ContinuousClock.now - started).timeInterval
    let sorted = results.latencies.sorted()
    func percentile(_ p: Double) -> Double {
        sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))].timeInterval * 1000
    }
    print(
        String(
            format: "RESULT orders=%d seconds=%.2f p50_ms=%.2f p99_ms=%.2f requests=%d errors=%d",
            sorted.count, elapsed, percentile(0.5), percentile(0.99), results.requests, results.errors))
}

final class ACMELoadClient: Sendable {
    struct Tally {
        var latencies: [Duration] = []
        var requests = 0
        var errors = 0
    }

    struct Directory: Sendable {
        let newNonce: String
        let newAccount: String
        let newOrder: String
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let http: HTTPClient
    let directory: Directory
    let signer: JWSSigner
    let kid: String
    let nonce: LockedNonce

    final class LockedNonce: @unchecked Sendable {
        private let lock = NSLock()
        private var value: String?
        func take() -> String? {
            lock.withLock {
                defer { value = nil }
                return value
            }
        }
        func put(_ nonce: String?) { if let nonce { lock.withLock { value = nonce } } }
    }

    init(http: HTTPClient, directory: Directory, nonce: LockedNonce = LockedNonce()) async throws {
        self.http = http
        self.directory = directory
        self.nonce = nonce
        signer = try JWSSigner(.p256(P256.Signing.PrivateKey()))
        var tally = Tally()
        let (headers, _) = try await Self.post(
            http, signer: signer, nonce: nonce, directory: directory, url: directory.newAccount,
            payload: ["termsOfServiceAgreed": true], kid: nil, tally: &tally)
        guard let location = headers.first(name: "Location") else {
            throw Failure(description: "newAccount without Location")
        }
        kid = location
    }

    static func json(_ response: HTTPClientResponse) async throws -> [String: Any] {
        let body = try await response.body.collect(upTo: 1 << 20)
        return (try JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
    }

    static func post(
        _ http: HTTPClient, signer: JWSSigner, nonce: LockedNonce, directory: Directory, url: String,
        payload: [String: Any]?, kid: String?,
        tally: inout Tally
    ) async throws -> (HTTPHeaders, ByteBuffer) {
        for _ in 0..<3 {
            var current = nonce.take()
            if current == nil {
                var head = HTTPClientRequest(url: directory.newNonce)
                head.method = .HEAD
                let response = try await http.execute(head, timeout: .seconds(10))
                tally.requests += 1
                current = response.headers.first(name: "Replay-Nonce")
            }
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/jose+json")
            request.headers.add(name: "User-Agent", value: "signet-bench")
            let body = try signer.sign(
                payload: try payload.map { try JSONSerialization.data(withJSONObject: $0) }, url: url, nonce: current,
                keyID: kid)
            request.body = .bytes(ByteBuffer(data: body))
            let response = try await http.execute(request, timeout: .seconds(10))
            tally.requests += 1
            nonce.put(response.headers.first(name: "Replay-Nonce"))
            let buffer = try await response.body.collect(upTo: 1 << 20)
            if response.status.code == 400, String(buffer: buffer).contains("badNonce") { continue }
            guard response.status.code < 300 else {
                throw Failure(description: "POST \(url): \(response.status.code) \(String(buffer: buffer))")
            }
            return (response.headers, buffer)
        }
        throw Failure(description: "POST \(url): three bad nonces in a row")
    }

    func post(_ url: String, _ payload: [String: Any]?, tally: inout Tally) async throws -> (
        HTTPHeaders, [String: Any], ByteBuffer
    ) {
        let (headers, body) = try await Self.post(
            http, signer: signer, nonce: nonce, directory: directory, url: url, payload: payload, kid: kid,
            tally: &tally)
        let object = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
        return (headers, object, body)
    }

    func order(name: String, csr: String, tally: inout Tally) async throws {
        let (headers, order, _) = try await post(
            directory.newOrder, ["identifiers": [["type": "dns", "value": name]]], tally: &tally)
        guard let orderURL = headers.first(name: "Location") else {
            throw Failure(description: "newOrder without Location")
        }
        for authorizationURL in order["authorizations"] as? [String] ?? [] {
            var (_, authorization, _) = try await post(authorizationURL, nil, tally: &tally)
            if authorization["status"] as? String == "pending" {
                guard
                    let challenge = (authorization["challenges"] as? [[String: Any]])?.first(where: {
                        $0["type"] as? String == "http-01"
                    }),
                    let url = challenge["url"] as? String
                else { throw Failure(description: "no http-01 challenge") }
                _ = try await post(url, [:], tally: &tally)
                while authorization["status"] as? String == "pending" {
                    (_, authorization, _) = try await post(authorizationURL, nil, tally: &tally)
                    if authorization["status"] as? String == "pending" { try await Task.sleep(for: .milliseconds(5)) }
                }
            }
            guard authorization["status"] as? String == "valid" else {
                throw Failure(description: "authorization \(authorization["status"] ?? "?")")
            }
        }
        var current = order
        while current["status"] as? String == "pending" {
            (_, current, _) = try await post(orderURL, nil, tally: &tally)
            if current["status"] as? String == "pending" { try await Task.sleep(for: .milliseconds(5)) }
        }
        guard let finalizeURL = current["finalize"] as? String else { throw Failure(description: "no finalize URL") }
        var (_, finalized, _) = try await post(finalizeURL, ["csr": csr], tally: &tally)
        while finalized["status"] as? String == "processing" {
            try await Task.sleep(for: .milliseconds(5))
            (_, finalized, _) = try await post(orderURL, nil, tally: &tally)
        }
        guard finalized["status"] as? String == "valid", let certificateURL = finalized["certificate"] as? String else {
            throw Failure(description: "order ended \(finalized["status"] ?? "?")")
        }
        let (_, _, chain) = try await post(certificateURL, nil, tally: &tally)
        guard String(buffer: chain).contains("BEGIN CERTIFICATE") else {
            throw Failure(description: "no certificate in the download")
        }
    }

    static func csr(host: String) throws -> String {
        let key = P256.Signing.PrivateKey()
        var attributes = CertificateSigningRequest.Attributes()
        attributes.insert(
            try .init(
                ExtensionRequest(extensions: try Certificate.Extensions { SubjectAlternativeNames([.dnsName(host)]) })))
        let request = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName(host) }, privateKey: .init(key),
            attributes: attributes, signatureAlgorithm: .ecdsaWithSHA256
        )
        var serializer = DER.Serializer()
        try serializer.serialize(request)
        return Base64URL.encode(serializer.serializedBytes)
    }
}
