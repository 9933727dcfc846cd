import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import SignetHTTP

public enum KubernetesError: Error, Equatable, CustomStringConvertible {
    case configuration(String)
    /// The API server's `v1.Status` refusal.
    case status(code: Int, reason: String, message: String)
    case unreachable(String)
    case invalidAnswer(String)

    public var description: String {
        switch self {
        case .configuration(let what): "Kubernetes configuration: \(what)"
        case let .status(code, reason, message): "Kubernetes API \(code) \(reason): \(message)"
        case .unreachable(let what): "Kubernetes API unreachable: \(what)"
        case .invalidAnswer(let what): "Kubernetes API answered something unexpected: \(what)"
        }
    }

    public var code: Int? {
        guard case .status(let code, _, _) = self else { return nil }
        return code
    }

    public var reason: String? {
        guard case .status(_, let reason, _) = self else { return nil }
        return reason
    }
}

/// The few calls Signet makes to a Kubernetes API server: Secrets (get, list, create, replace, watch) and Events.
/// Transient failures (429 with its Retry-After, 5xx, timeouts, refused connections) are retried a bounded number
/// of times with exponential backoff and jitter; a 401 re-reads a rotating token file once.
public final class KubernetesClient: Sendable {
    /// The API server's retries: four attempts, a `Retry-After` of at most 30 s.
    public static var defaultRetry: HTTPTransport.RetryPolicy {
        var policy = HTTPTransport.RetryPolicy(attempts: 4)
        policy.maximumRetryAfter = .seconds(30)
        return policy
    }

    public let configuration: KubernetesConfiguration
    let http: HTTPClient
    let retry: HTTPTransport.RetryPolicy
    /// Every call but watches goes through it (a watch is one long request, resumed by the informer instead).
    let transport: HTTPTransport
    let logger: Logger
    /// The service-account token, for a `.tokenFile` credential.
    private let tokenFile: RotatingTokenFile?

    /// The API server's URL as requests name it: with `tls-server-name`, its host is that name, and the connection
    /// goes to the configured host (AsyncHTTPClient's DNS override), so the certificate is verified for that name.
    let base: String

    public init(
        configuration: KubernetesConfiguration, retry: HTTPTransport.RetryPolicy = KubernetesClient.defaultRetry,
        logger: Logger
    ) throws {
        guard let url = URL(string: configuration.server), let scheme = url.scheme, let host = url.host else {
            throw KubernetesError.configuration("the API server '\(configuration.server)' is not a URL")
        }
        guard scheme == "https" || (scheme == "http" && configuration.allowPlainHTTP) else {
            throw KubernetesError.configuration(
                scheme == "http"
                    ? "the API server \(configuration.server) is plain HTTP: tokens and Secrets would cross the network unencrypted; use https, or allow it explicitly (allowPlainHTTP)"
                    : "the API server \(configuration.server) is not an https:// URL")
        }
        var dnsOverride: [String: String] = [:]
        if let name = configuration.tlsServerName, !name.isEmpty, name != host {
            guard scheme == "https" else {
                throw KubernetesError.configuration("tls-server-name '\(name)' needs an https:// API server")
            }
            guard !configuration.insecureSkipTLSVerify else {
                throw KubernetesError.configuration(
                    "tls-server-name '\(name)' and insecure-skip-tls-verify contradict each other; keep one")
            }
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }) else {
                throw KubernetesError.configuration("tls-server-name '\(name)' is not a host name")
            }
            let bareHost = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
            dnsOverride[name] = bareHost
            base = "https://\(name)" + (url.port.map { ":\($0)" } ?? "") + url.path
        } else {
            base = configuration.server
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let pem = configuration.certificateAuthorityPEM {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
        }
        if configuration.insecureSkipTLSVerify { tls.certificateVerification = .none }
        if case let .clientCertificate(certificatePEM, keyPEM) = configuration.credential {
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map {
                .certificate($0)
            }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        }
        self.configuration = configuration
        if case .tokenFile(let path) = configuration.credential {
            tokenFile = RotatingTokenFile(path: path)
        } else {
            tokenFile = nil
        }
        var http = HTTPClient.Configuration(tlsConfiguration: tls)
        http.dnsOverride = dnsOverride
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        self.retry = retry
        self.logger = logger
        self.transport = HTTPTransport(http: self.http, retry: retry, logger: logger)
    }

    public func shutdown() async throws {
        try await http.shutdown()
    }

    // MARK: Objects of any kind

    /// The object, or nil when there is none.
    public func get(_ kind: ResourceKind, namespace: String?, name: String) async throws -> KubernetesObject? {
        do {
            return try await call(.GET, kind.path(namespace: namespace, name: name))
        } catch let error as KubernetesError where error.code == 404 {
            return nil
        }
    }

    public func create(_ kind: ResourceKind, _ object: KubernetesObject) async throws -> KubernetesObject {
        try await call(.POST, kind.path(namespace: object.namespace ?? configuration.namespace), body: object)
    }

    /// PUT with the object's resourceVersion: a stale one is answered 409 Conflict.
    public func replace(_ kind: ResourceKind, _ object: KubernetesObject) async throws -> KubernetesObject {
        try await call(
            .PUT, kind.path(namespace: object.namespace ?? configuration.namespace, name: object.name), body: object)
    }

    /// PUT to the status subresource: only `.status` is written, guarded by the resourceVersion like any replace.
    public func replaceStatus(_ kind: ResourceKind, _ object: KubernetesObject) async throws -> KubernetesObject {
        try await call(
            .PUT,
            kind.path(namespace: object.namespace ?? configuration.namespace, name: object.name, subresource: "status"),
            body: object)
    }

    public func delete(_ kind: ResourceKind, namespace: String?, name: String) async throws {
        let _: JSONValue = try await call(.DELETE, kind.path(namespace: namespace, name: name))
    }

    /// The objects matching `labelSelector` (in all namespaces when `namespace` is nil), and the list's
    /// resourceVersion to watch from.
    public func list(_ kind: ResourceKind, namespace: String?, labelSelector: String? = nil) async throws -> (
        items: [KubernetesObject], resourceVersion: String
    ) {
        var query = ""
        if let labelSelector { query = "?labelSelector=" + Self.escape(labelSelector) }
        let list: JSONValue = try await call(.GET, kind.path(namespace: namespace) + query)
        guard case .array(let items)? = list["items"], let version = list["metadata"]?["resourceVersion"]?.string else {
            throw KubernetesError.invalidAnswer("a \(kind.plural) list without items or resourceVersion")
        }
        return (items.map(KubernetesObject.init), version)
    }

    /// Any JSON document of the API server (discovery, the OIDC documents).
    public func document(_ path: String) async throws -> JSONValue {
        try await call(.GET, path)
    }

    /// A TokenReview: who the API server says the bearer of `token` is, for one of `audiences`.
    public func reviewToken(_ token: String, audiences: [String]) async throws -> JSONValue {
        let review: JSONValue = .object([
            "apiVersion": .string("authentication.k8s.io/v1"), "kind": .string("TokenReview"),
            "spec": .object(["token": .string(token), "audiences": .array(audiences.map(JSONValue.string))]),
        ])
        let answer: JSONValue = try await call(.POST, "/apis/authentication.k8s.io/v1/tokenreviews", body: review)
        return answer["status"] ?? .null
    }

    // MARK: Secrets

    public func getSecret(namespace: String, name: String) async throws -> KubernetesObject? {
        try await get(.secrets, namespace: namespace, name: name)
    }

    public func createSecret(_ secret: KubernetesObject) async throws -> KubernetesObject {
        try await create(.secrets, secret)
    }

    public func replaceSecret(_ secret: KubernetesObject) async throws -> KubernetesObject {
        try await replace(.secrets, secret)
    }

    public func listSecrets(namespace: String, labelSelector: String? = nil) async throws -> (
        items: [KubernetesObject], resourceVersion: String
    ) {
        try await list(.secrets, namespace: namespace, labelSelector: labelSelector)
    }

    // MARK: Events

    /// The longest prefix of `text` within `bytes` UTF-8 bytes (the API server limits an Event's note in bytes, and
    /// a character cut in half would make the JSON invalid).
    static func prefix(_ text: String, bytes: Int) -> String {
        var used = 0
        var out = ""
        for character in text {
            used += character.utf8.count
            if used > bytes { break }
            out.append(character)
        }
        return out
    }

    /// An events.k8s.io/v1 Event about `object` (best effort: callers log a failure and go on).
    public func recordEvent(
        regarding object: KubernetesObject, type: String, reason: String, action: String, note: String,
        controller: String = "signet.dev/signet"
    ) async throws {
        let namespace = object.namespace ?? configuration.namespace
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let event: JSONValue = .object([
            "apiVersion": .string("events.k8s.io/v1"), "kind": .string("Event"),
            "metadata": .object(["generateName": .string("signet-"), "namespace": .string(namespace)]),
            "eventTime": .string(formatter.string(from: Date()).replacingOccurrences(of: "Z", with: "000Z")),
            "reportingController": .string(controller),
            "reportingInstance": .string(ProcessInfo.processInfo.hostName.prefix(128).description),
            "action": .string(action), "reason": .string(reason), "type": .string(type),
            "note": .string(Self.prefix(note, bytes: 1024)),
            "regarding": .object([
                "apiVersion": .string("v1"), "kind": .string(object.kind ?? "Secret"), "namespace": .string(namespace),
                "name": .string(object.name), "uid": object.json["metadata"]?["uid"] ?? .null,
            ]),
        ])
        let _: JSONValue = try await call(
            .POST, "/apis/events.k8s.io/v1/namespaces/\(Self.escape(namespace))/events", body: event)
    }

    // MARK: Watch

    public enum WatchEvent: Sendable, Equatable {
        case added(KubernetesObject)
        case modified(KubernetesObject)
        case deleted(KubernetesObject)
        case bookmark(resourceVersion: String)
        /// The resourceVersion is too old (410 Gone/Expired): list again and watch from there.
        case expired
    }

    /// One watch request from `resourceVersion`: its events until the server ends the stream (or `timeoutSeconds`).
    public func watchSecrets(
        namespace: String, labelSelector: String? = nil, resourceVersion: String, timeoutSeconds: Int = 300
    ) -> AsyncThrowingStream<WatchEvent, any Error> {
        watch(
            .secrets, namespace: namespace, labelSelector: labelSelector, resourceVersion: resourceVersion,
            timeoutSeconds: timeoutSeconds)
    }

    /// One watch request from `resourceVersion` (all namespaces when `namespace` is nil): its events until the server
    /// ends the stream (or `timeoutSeconds`).
    public func watch(
        _ kind: ResourceKind, namespace: String?, labelSelector: String? = nil, resourceVersion: String,
        timeoutSeconds: Int = 300
    ) -> AsyncThrowingStream<WatchEvent, any Error> {
        var query =
            "?watch=1&allowWatchBookmarks=true&resourceVersion=\(Self.escape(resourceVersion))&timeoutSeconds=\(timeoutSeconds)"
        if let labelSelector { query += "&labelSelector=" + Self.escape(labelSelector) }
        let url = base + kind.path(namespace: namespace) + query
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    var request = HTTPClientRequest(url: url)
                    try await authorize(&request)
                    let response = try await http.execute(request, timeout: .seconds(Int64(timeoutSeconds) + 30))
                    if response.status.code == 410 {
                        continuation.yield(.expired)
                        continuation.finish()
                        return
                    }
                    guard response.status == .ok else {
                        let body = try await response.body.collect(upTo: 1 << 20)
                        throw Self.error(status: response.status, body: Data(buffer: body))
                    }
                    var pending = Data()
                    for try await chunk in response.body {
                        pending.append(contentsOf: chunk.readableBytesView)
                        while let newline = pending.firstIndex(of: 0x0A) {
                            let line = pending[pending.startIndex..<newline]
                            pending = Data(pending[(newline + 1)...])
                            guard !line.isEmpty, let event = try Self.watchEvent(line) else { continue }
                            continuation.yield(event)
                            if event == .expired { break }
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    static func watchEvent(_ line: Data) throws -> WatchEvent? {
        let event = try JSONDecoder().decode(JSONValue.self, from: line)
        guard let type = event["type"]?.string, let object = event["object"] else {
            throw KubernetesError.invalidAnswer("a watch event without type or object")
        }
        switch type {
        case "ADDED": return .added(KubernetesObject(object))
        case "MODIFIED": return .modified(KubernetesObject(object))
        case "DELETED": return .deleted(KubernetesObject(object))
        case "BOOKMARK": return object["metadata"]?["resourceVersion"]?.string.map { .bookmark(resourceVersion: $0) }
        case "ERROR":
            let code = Int(object["code"]?.number ?? 0)
            if code == 410 { return .expired }
            throw KubernetesError.status(
                code: code, reason: object["reason"]?.string ?? "", message: object["message"]?.string ?? "watch error")
        default: return nil
        }
    }

    // MARK: Requests

    func call<Body: Encodable, Answer: Decodable>(_ method: HTTPMethod, _ path: String, body: Body) async throws
        -> Answer
    {
        try await call(method, path, payload: try JSONEncoder().encode(body))
    }

    func call<Answer: Decodable>(_ method: HTTPMethod, _ path: String) async throws -> Answer {
        try await call(method, path, payload: nil)
    }

    private func call<Answer: Decodable>(_ method: HTTPMethod, _ path: String, payload: Data?) async throws -> Answer {
        let answer: HTTPTransport.Answer
        do {
            answer = try await transport.send(
                {
                    var request = HTTPClientRequest(url: base + path)
                    request.method = method
                    request.headers.add(name: "Accept", value: "application/json")
                    request.headers.add(name: "User-Agent", value: "signet")
                    try await authorize(&request)
                    if let payload {
                        request.headers.add(name: "Content-Type", value: "application/json")
                        request.body = .bytes(ByteBuffer(data: payload))
                    }
                    return request
                }, transient: { [500, 502, 503, 504].contains($0) },
                refresh: tokenFile.map { file in
                    // A rotated service-account token: read the file again, once.
                    { _ in file.reload() }
                })
        } catch let error as HTTPTransportError {
            throw KubernetesError.unreachable(error.description)
        }
        guard (200..<300).contains(answer.status.code) else {
            throw Self.error(status: answer.status, body: answer.body)
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: answer.body)
        } catch {
            throw KubernetesError.invalidAnswer("\(method) \(path): \(error)")
        }
    }

    private func authorize(_ request: inout HTTPClientRequest) async throws {
        switch configuration.credential {
        case .token(let token):
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        case .tokenFile:
            guard let tokenFile else { break }
            do {
                request.headers.add(name: "Authorization", value: "Bearer \(try tokenFile.current())")
            } catch {
                throw KubernetesError.configuration(error.description)
            }
        case .clientCertificate, .none:
            break
        }
    }

    static func error(status: HTTPResponseStatus, body: Data) -> KubernetesError {
        let object = try? JSONDecoder().decode(JSONValue.self, from: body)
        return .status(
            code: Int(status.code),
            reason: object?["reason"]?.string ?? status.reasonPhrase,
            message: object?["message"]?.string ?? String(decoding: body.prefix(200), as: UTF8.self)
        )
    }

    static func escape(_ component: String) -> String {
        component.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~")))
            ?? component
    }
}

/// Where a kind of object lives in the REST tree.
public struct ResourceKind: Sendable, Hashable {
    public var group: String
    public var version: String
    public var plural: String
    public var kind: String
    public var namespaced: Bool

    public init(group: String, version: String, plural: String, kind: String, namespaced: Bool = true) {
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
    }

    public static let secrets = ResourceKind(group: "", version: "v1", plural: "secrets", kind: "Secret")
    public static let pods = ResourceKind(group: "", version: "v1", plural: "pods", kind: "Pod")
    public static let leases = ResourceKind(
        group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease")
    public static let gateways = ResourceKind(
        group: "networking.istio.io", version: "v1", plural: "gateways", kind: "Gateway")
    public static let certificates = ResourceKind(
        group: "signet.dev", version: "v1alpha1", plural: "certificates", kind: "Certificate")
    public static let signetIssuers = ResourceKind(
        group: "signet.dev", version: "v1alpha1", plural: "signetissuers", kind: "SignetIssuer")
    public static let signetClusterIssuers = ResourceKind(
        group: "signet.dev", version: "v1alpha1", plural: "signetclusterissuers", kind: "SignetClusterIssuer",
        namespaced: false
    )
    /// cert-manager's CertificateRequest, which an external issuer signs.
    public static let certificateRequests = ResourceKind(
        group: "cert-manager.io", version: "v1", plural: "certificaterequests", kind: "CertificateRequest")
    /// Kubernetes' own CSR API (cluster-scoped), signed by whoever serves its `signerName`.
    public static let certificateSigningRequests = ResourceKind(
        group: "certificates.k8s.io", version: "v1", plural: "certificatesigningrequests",
        kind: "CertificateSigningRequest", namespaced: false
    )

    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

    /// `/api/v1/namespaces/ns/secrets/name/status` and the like; without a namespace, the cluster-wide collection.
    public func path(namespace: String?, name: String? = nil, subresource: String? = nil) -> String {
        var path = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        if namespaced, let namespace { path += "/namespaces/" + KubernetesClient.escape(namespace) }
        path += "/" + plural
        if let name { path += "/" + KubernetesClient.escape(name) }
        if let subresource { path += "/" + subresource }
        return path
    }
}

/// A Kubernetes object as JSON, with accessors for what Signet reads and writes.
public struct KubernetesObject: Sendable, Equatable, Codable {
    public var json: JSONValue

    public init(_ json: JSONValue) { self.json = json }

    public init(from decoder: any Decoder) throws { json = try JSONValue(from: decoder) }
    public func encode(to encoder: any Encoder) throws { try json.encode(to: encoder) }

    public var kind: String? { json["kind"]?.string }
    public var name: String { json["metadata"]?["name"]?.string ?? "" }
    public var namespace: String? { json["metadata"]?["namespace"]?.string }
    public var resourceVersion: String? { json["metadata"]?["resourceVersion"]?.string }
    public var type: String? { json["type"]?.string }

    public var labels: [String: String] {
        get { json["metadata"]?["labels"]?.stringMap ?? [:] }
        set { json["metadata"]?["labels"] = newValue.isEmpty ? nil : .strings(newValue) }
    }

    public var annotations: [String: String] {
        get { json["metadata"]?["annotations"]?.stringMap ?? [:] }
        set { json["metadata"]?["annotations"] = newValue.isEmpty ? nil : .strings(newValue) }
    }

    /// A Secret's data, decoded from base64.
    public var data: [String: [UInt8]] {
        get { (json["data"]?.stringMap ?? [:]).compactMapValues { Data(base64Encoded: $0).map(Array.init) } }
        set { json["data"] = .strings(newValue.mapValues { Data($0).base64EncodedString() }) }
    }
}

extension KubernetesClient {
    /// Read-modify-write of an object's `.status` through its status subresource (the change gets the status and
    /// the object's generation); a 409 Conflict re-reads and re-applies, five times at most. Nothing is written when
    /// the change changes nothing, or the object is gone.
    public func updateStatus(
        _ kind: ResourceKind, namespace: String?, name: String, _ change: @Sendable (inout JSONValue, Int) -> Void
    ) async throws {
        var conflict: KubernetesError?
        for _ in 0..<5 {
            guard var object = try await get(kind, namespace: namespace, name: name) else { return }
            let before = object.json["status"] ?? .object([:])
            var status = before
            change(&status, Int(object.json["metadata"]?["generation"]?.number ?? 0))
            guard status != before else { return }
            object.json["status"] = status
            do {
                _ = try await replaceStatus(kind, object)
                return
            } catch let error as KubernetesError where error.code == 409 {
                conflict = error
            }
        }
        if let conflict { throw conflict }
    }
}
