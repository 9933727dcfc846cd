import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import SignetACME
import SignetAuthority
import SignetLedger
import Synchronization

/// The ACME web front end (RFC 8555 §7): routes under `/acme/{directory}/`, JWS authentication (nonce, url,
/// account or embedded key, signature), and the JSON of each resource. Decisions are the registration authority's
/// (ACMEService); this file only translates between HTTP and it.
struct ACMEFrontEnd: Sendable {
    let service: ACMEService
    let store: any ACMEStore
    /// The public URL every URL handed out starts with (no trailing slash).
    let baseURL: String

    static let maximumBody = 64 * 1024
    /// Accounts and their parsed keys, read at most once per `tokenCacheSeconds` (as API tokens are): a
    /// deactivation, key change or EAB revocation made elsewhere is seen within that time, one made here at once.
    let accounts: AccountCache

    init(service: ACMEService, store: any ACMEStore, baseURL: String, cacheLifetime: Duration) {
        self.service = service
        self.store = store
        self.baseURL = baseURL
        self.accounts = AccountCache(store: store, lifetime: cacheLifetime)
    }

    func register(on router: Router<SignetRequestContext>) {
        let group = router.group("acme/:directory").add(middleware: ACMEEdge(store: store, baseURL: baseURL))
        group.get("directory") { _, context in try self.directory(context) }
        group.post("directory") { _, context in try self.directory(context) }
        group.head("new-nonce") { _, context in
            _ = try self.policy(context)
            return Response(status: .ok, headers: [.cacheControl: "no-store"])
        }
        group.get("new-nonce") { _, context in
            _ = try self.policy(context)
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
        group.post("new-account") { request, context in try await self.newAccount(request, context) }
        group.post("account/:id") { request, context in try await self.account(request, context) }
        group.post("account/:id/orders") { request, context in try await self.orders(request, context) }
        group.post("key-change") { request, context in try await self.keyChange(request, context) }
        group.post("new-order") { request, context in try await self.newOrder(request, context) }
        group.post("order/:id") { request, context in try await self.order(request, context) }
        group.post("order/:id/finalize") { request, context in try await self.finalize(request, context) }
        group.post("authz/:id") { request, context in try await self.authorization(request, context) }
        group.post("chall/:id/:type") { request, context in try await self.challenge(request, context) }
        group.post("cert/:serial") { request, context in try await self.certificate(request, context) }
        group.post("revoke-cert") { request, context in try await self.revokeCertificate(request, context) }
        group.get("renewal-info/:certID") { _, context in try await self.renewalInfo(context) }
        // Everything else under a directory answers in ACME's error format, with a nonce, like the rest.
        for method in [HTTPRequest.Method.get, .post, .head, .put, .delete, .patch] {
            group.on("**", method: method) { request, _ -> Response in
                throw ACMEError(
                    .malformed, "no ACME resource answers \(request.method.rawValue) \(request.uri.path)", status: 404)
            }
        }
    }

    // MARK: Authentication

    struct Authenticated {
        let jws: FlattenedJWS
        let key: JSONWebKey
        let account: ACMEAccount?
        let policy: ACMEDirectoryPolicy
        let urls: ACMEURLs

        func requireAccount() throws(ACMEError) -> ACMEAccount {
            guard let account else {
                throw ACMEError(.malformed, "this request must be signed by an account key and name the account (kid)")
            }
            return account
        }
    }

    func policy(_ context: SignetRequestContext) throws(ACMEError) -> ACMEDirectoryPolicy {
        try service.directory(context.parameters.get("directory") ?? "")
    }

    /// Checks a POST (§6.2–6.5): content type, flattened JWS, `url` equal to this request's URL, the signer (an
    /// account by `kid`, or where allowed the `jwk` in the header), the signature, and then the nonce, which is
    /// spent only by a request that verified.
    func authenticate(_ request: Request, _ context: SignetRequestContext, embeddedKey: Bool = false) async throws
        -> Authenticated
    {
        let policy = try policy(context)
        let urls = ACMEURLs(base: baseURL, directory: policy.name)
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/jose+json") == true else {
            throw ACMEError(.malformed, "ACME requests are JWS with Content-Type application/jose+json", status: 415)
        }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: Self.maximumBody)
        } catch {
            throw ACMEError(.malformed, "request bodies are limited to \(Self.maximumBody) bytes", status: 413)
        }
        let jws = try FlattenedJWS(body: Data(buffer: body))
        let url = baseURL + request.uri.path
        guard jws.url == url else {
            throw ACMEError(.unauthorized, "the JWS url '\(jws.url)' is not this request's URL '\(url)'")
        }
        let key: JSONWebKey
        var account: ACMEAccount?
        if let keyID = jws.keyID {
            guard keyID.hasPrefix(urls.accountPrefix),
                let (found, foundKey) = try await accounts.account(
                    id: String(keyID.dropFirst(urls.accountPrefix.count))),
                found.directory == policy.name
            else {
                throw ACMEError(.accountDoesNotExist, "kid '\(keyID)' is not an account of directory '\(policy.name)'")
            }
            guard found.status == .valid else {
                throw ACMEError(.unauthorized, "the account is \(found.status.rawValue)")
            }
            key = foundKey
            account = found
        } else {
            guard embeddedKey, let embedded = jws.jwk else {
                throw ACMEError(
                    .malformed, "this request must be signed by an account and name it (kid), not carry a jwk")
            }
            key = embedded
        }
        try jws.verify(with: key)
        guard let nonce = jws.nonce, try await store.consumeNonce(nonce, now: Date()) else {
            throw ACMEError(
                .badNonce,
                ACMEError.badNonceDetail
                    + (jws.nonce == nil
                        ? ": the JWS has no nonce"
                        : ": '\(jws.nonce ?? "")' was not issued by this server, expired or was used"))
        }
        return Authenticated(jws: jws, key: key, account: account, policy: policy, urls: urls)
    }

    // MARK: Resources

    func directory(_ context: SignetRequestContext) throws -> Response {
        let policy = try policy(context)
        let urls = ACMEURLs(base: baseURL, directory: policy.name)
        var meta: [String: Any] = [
            "externalAccountRequired": policy.externalAccountRequired,
            "profiles": policy.profileDescriptions,
            "caaIdentities": policy.caaIdentities,
        ]
        if let website = policy.website { meta["website"] = website }
        if let terms = policy.termsOfService { meta["termsOfService"] = terms }
        return try Self.json([
            "newNonce": urls.newNonce, "newAccount": urls.newAccount, "newOrder": urls.newOrder,
            "revokeCert": urls.revokeCert,
            "keyChange": urls.keyChange, "renewalInfo": urls.renewalInfo, "meta": meta,
        ])
    }

    func newAccount(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context, embeddedKey: true)
        guard auth.account == nil else {
            throw ACMEError(.malformed, "newAccount is signed with the account key (jwk), not kid")
        }
        let (account, created) = try await service.newAccount(
            directory: auth.policy, key: auth.key, payload: try auth.jws.payloadObject(), url: auth.jws.url)
        return try Self.json(
            accountJSON(account, auth.urls), status: created ? .created : .ok, location: auth.urls.account(account.id))
    }

    func account(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context)
        let account = try auth.requireAccount()
        guard context.parameters.get("id") == account.id else {
            throw ACMEError(.unauthorized, "the request is signed by another account than the one it names")
        }
        let updated =
            auth.jws.isPostAsGet
            ? account : try await service.updateAccount(account, payload: try auth.jws.payloadObject())
        if !auth.jws.isPostAsGet { accounts.forget(account.id) }
        return try Self.json(accountJSON(updated, auth.urls), location: auth.urls.account(updated.id))
    }

    func orders(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context)
        let account = try auth.requireAccount()
        guard context.parameters.get("id") == account.id else {
            throw ACMEError(.unauthorized, "an account's orders are listed to that account only")
        }
        return try Self.json(["orders": try await service.orders(account: account).map(auth.urls.order)])
    }

    func keyChange(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context)
        let account = try auth.requireAccount()
        let accountURL = auth.urls.account(account.id)
        defer { accounts.forget(account.id) }
        if let other = try await service.changeKey(
            account, oldKey: auth.key, accountURL: accountURL, payload: auth.jws.payload, url: auth.jws.url)
        {
            var response = ACMEEdge.problem(
                ACMEError(.malformed, "the new key already belongs to another account", status: 409))
            response.headers[.location] = auth.urls.account(other)
            return response
        }
        return try Self.json(
            accountJSON(try await store.account(id: account.id) ?? account, auth.urls), location: accountURL)
    }

    func newOrder(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context)
        let (order, authorizations) = try await service.newOrder(
            directory: auth.policy, account: try auth.requireAccount(), payload: try auth.jws.payloadObject())
        return try Self.json(
            orderJSON(order, authorizations, auth.urls), status: .created, location: auth.urls.order(order.id))
    }

    func order(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context)
        let (order, authorizations) = try await service.order(
            id: context.parameters.get("id") ?? "", account: try auth.requireAccount())
        return try orderResponse(order, authorizations, auth.urls)
    }

    func finalize(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context)
        let (order, authorizations) = try await service.finalize(
            orderID: context.parameters.get("id") ?? "", account: try auth.requireAccount(), accountKey: auth.key,
            directory: auth.policy,
            payload: try auth.jws.payloadObject()
        )
        return try orderResponse(order, authorizations, auth.urls)
    }

    /// An order with the `Location` x/crypto (cert-manager) polls and, while it is not final, a `Retry-After`.
    private func orderResponse(_ order: ACMEOrder, _ authorizations: [ACMEAuthorization], _ urls: ACMEURLs) throws
        -> Response
    {
        var response = try Self.json(orderJSON(order, authorizations, urls), location: urls.order(order.id))
        let status = service.status(of: order, authorizations)
        if status == .pending || status == .processing { response.headers[.retryAfter] = "1" }
        return response
    }

    func authorization(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context)
        var authorization = try await service.authorization(
            id: context.parameters.get("id") ?? "", account: try auth.requireAccount())
        if !auth.jws.isPostAsGet {
            let payload = try auth.jws.payloadObject()
            guard payload["status"] as? String == "deactivated" else {
                throw ACMEError(.malformed, "an authorization's status may only be set to deactivated")
            }
            authorization = try await service.deactivate(authorization)
        }
        var response = try Self.json(authorizationJSON(authorization, auth.urls))
        if service.status(of: authorization) == .pending { response.headers[.retryAfter] = "1" }
        return response
    }

    func challenge(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context)
        let account = try auth.requireAccount()
        let authorizationID = context.parameters.get("id") ?? ""
        guard let type = ChallengeType(rawValue: context.parameters.get("type") ?? "") else {
            throw ACMEError(.malformed, "no such challenge", status: 404)
        }
        let authorization: ACMEAuthorization, challenge: ACMEChallenge
        if auth.jws.isPostAsGet {
            authorization = try await service.authorization(id: authorizationID, account: account)
            guard let found = authorization.challenges.first(where: { $0.type == type }) else {
                throw ACMEError(.malformed, "no such challenge", status: 404)
            }
            challenge = found
        } else {
            _ = try auth.jws.payloadObject()
            (authorization, challenge) = try await service.respond(
                to: type, of: authorizationID, account: account, directory: auth.policy)
        }
        var response = try Self.json(
            challengeJSON(challenge, authorizationID: authorization.id, auth.urls),
            location: auth.urls.challenge(authorization.id, type))
        response.headers.append(
            HTTPField(name: ACMEEdge.link, value: "<\(auth.urls.authorization(authorization.id))>;rel=\"up\""))
        if challenge.status == .processing { response.headers[.retryAfter] = "1" }
        return response
    }

    func certificate(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context)
        let chain = try await service.chain(
            serial: context.parameters.get("serial") ?? "", account: try auth.requireAccount())
        return Response(
            status: .ok, headers: [.contentType: "application/pem-certificate-chain"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: chain))
        )
    }

    func revokeCertificate(_ request: Request, _ context: SignetRequestContext) async throws -> Response {
        let auth = try await authenticate(request, context, embeddedKey: true)
        try await service.revoke(
            payload: try auth.jws.payloadObject(),
            signer: auth.account.map { .account($0) } ?? .certificateKey(auth.key))
        return Response(status: .ok)
    }

    func renewalInfo(_ context: SignetRequestContext) async throws -> Response {
        _ = try policy(context)
        let window = try await service.renewalWindow(certificateID: context.parameters.get("certID") ?? "")
        var response = try Self.json([
            "suggestedWindow": ["start": RFC3339.format(window.start), "end": RFC3339.format(window.end)]
        ])
        response.headers[.retryAfter] = "21600"
        return response
    }

    // MARK: JSON

    func accountJSON(_ account: ACMEAccount, _ urls: ACMEURLs) -> [String: Any] {
        var object: [String: Any] = [
            "status": account.status.rawValue, "contact": account.contact, "orders": urls.orders(account.id),
        ]
        if let keyID = account.externalKeyID { object["externalAccountBinding"] = ["kid": keyID] }
        return object
    }

    func orderJSON(_ order: ACMEOrder, _ authorizations: [ACMEAuthorization], _ urls: ACMEURLs) -> [String: Any] {
        let status = service.status(of: order, authorizations)
        var object: [String: Any] = [
            "status": status.rawValue,
            "expires": RFC3339.format(order.expires),
            "identifiers": order.identifiers.map(\.json),
            "authorizations": order.authorizationIDs.map(urls.authorization),
            "finalize": urls.finalize(order.id),
        ]
        if let notAfter = order.notAfter { object["notAfter"] = RFC3339.format(notAfter) }
        if let profile = order.profile { object["profile"] = profile }
        if let replaces = order.replaces { object["replaces"] = replaces }
        if status == .valid, let serial = order.certificateSerial { object["certificate"] = urls.certificate(serial) }
        if let error = order.error { object["error"] = error.json }
        return object
    }

    func authorizationJSON(_ authorization: ACMEAuthorization, _ urls: ACMEURLs) -> [String: Any] {
        var object: [String: Any] = [
            "identifier": authorization.identifier.json,
            "status": service.status(of: authorization).rawValue,
            "expires": RFC3339.format(authorization.expires),
            "challenges": authorization.challenges.map { challengeJSON($0, authorizationID: authorization.id, urls) },
        ]
        if authorization.wildcard { object["wildcard"] = true }
        return object
    }

    func challengeJSON(_ challenge: ACMEChallenge, authorizationID: String, _ urls: ACMEURLs) -> [String: Any] {
        var object: [String: Any] = [
            "type": challenge.type.rawValue, "url": urls.challenge(authorizationID, challenge.type),
            "status": challenge.status.rawValue, "token": challenge.token,
        ]
        if let validated = challenge.validated { object["validated"] = RFC3339.format(validated) }
        if let error = challenge.error { object["error"] = error.json }
        return object
    }

    static func json(_ object: [String: Any], status: HTTPResponse.Status = .ok, location: String? = nil) throws
        -> Response
    {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])
        var headers: HTTPFields = [.contentType: "application/json"]
        if let location { headers[.location] = location }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Accounts by id with their parsed keys, each kept for `lifetime`; at most `capacity` of them (emptied when full:
/// a cache, not a store).
final class AccountCache: Sendable {
    private let store: any ACMEStore
    private let lifetime: Duration
    private let entries = Mutex<[String: (account: ACMEAccount, key: JSONWebKey, expires: ContinuousClock.Instant)]>([:]
    )
    static let capacity = 10_000

    init(store: any ACMEStore, lifetime: Duration) {
        self.store = store
        self.lifetime = lifetime
    }

    func account(id: String) async throws -> (ACMEAccount, JSONWebKey)? {
        let now = ContinuousClock.now
        if let entry = entries.withLock({ $0[id] }), entry.expires > now { return (entry.account, entry.key) }
        guard let account = try await store.account(id: id) else { return nil }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(account.jwk.utf8))) as? [String: Any] else {
            throw ACMEError(.serverInternal, "the account's key cannot be read")
        }
        let key = try JSONWebKey(json: object)
        entries.withLock { entries in
            if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
            entries[id] = (account, key, now + lifetime)
        }
        return (account, key)
    }

    func forget(_ id: String) {
        _ = entries.withLock { $0.removeValue(forKey: id) }
    }
}

/// The URLs of one directory's resources.
struct ACMEURLs: Sendable {
    let root: String

    init(base: String, directory: String) {
        root = base + "/acme/" + directory
    }

    var directory: String { root + "/directory" }
    var newNonce: String { root + "/new-nonce" }
    var newAccount: String { root + "/new-account" }
    var newOrder: String { root + "/new-order" }
    var revokeCert: String { root + "/revoke-cert" }
    var keyChange: String { root + "/key-change" }
    var renewalInfo: String { root + "/renewal-info" }
    var accountPrefix: String { root + "/account/" }
    func account(_ id: String) -> String { accountPrefix + id }
    func orders(_ id: String) -> String { accountPrefix + id + "/orders" }
    func order(_ id: String) -> String { root + "/order/" + id }
    func finalize(_ id: String) -> String { root + "/order/" + id + "/finalize" }
    func authorization(_ id: String) -> String { root + "/authz/" + id }
    func challenge(_ authorizationID: String, _ type: ChallengeType) -> String {
        root + "/chall/" + authorizationID + "/" + type.rawValue
    }
    func certificate(_ serial: String) -> String { root + "/cert/" + serial }
}

/// Every answer under `/acme/`: errors as ACME problem documents (RFC 8555 §6.7) with the statuses clients act on
/// (5xx for anything transient, which cert-manager retries), a fresh `Replay-Nonce` on each (§6.5, errors
/// included), and `Link: rel="index"` to the directory (§7.1).
struct ACMEEdge: RouterMiddleware {
    typealias Context = SignetRequestContext
    let store: any ACMEStore
    let baseURL: String

    static let replayNonce = HTTPField.Name("Replay-Nonce")!
    static let link = HTTPField.Name("Link")!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as ACMEError {
            response = Self.problem(error)
        } catch let error as HTTPError {
            response = Self.problem(
                ACMEError(.malformed, error.body ?? error.status.reasonPhrase, status: Int(error.status.code)))
        } catch {
            context.logger.error("ACME request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            response = Self.problem(
                ACMEError(
                    .serverInternal, "the server could not complete the request; try again", status: 503, retryAfter: 5)
            )
        }
        do {
            response.headers[Self.replayNonce] = try await store.issueNonce(now: Date())
        } catch {
            context.logger.error("could not issue an ACME nonce", metadata: ["error": "\(error)"])
        }
        if let directory = context.parameters.get("directory") {
            response.headers.append(
                HTTPField(
                    name: Self.link, value: "<\(ACMEURLs(base: baseURL, directory: directory).directory)>;rel=\"index\""
                ))
        }
        return response
    }

    static func problem(_ error: ACMEError) -> Response {
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let seconds = error.retryAfter { headers[.retryAfter] = String(seconds) }
        let data =
            (try? JSONSerialization.data(withJSONObject: error.json, options: [.withoutEscapingSlashes])) ?? Data()
        return Response(
            status: .init(code: error.status), headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
