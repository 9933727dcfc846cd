import Foundation
import Logging
import SignetACME
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetOpenAPI
import SwiftASN1
import Synchronization
import X509

/// The ACME registration authority: accounts, orders, authorizations and challenges under each directory's
/// policy, finalization through the same issuance pipeline as the REST API (rules, signer, ledger, audit),
/// revocation and renewal information. The HTTP front end (ACMEFrontEnd) authenticates requests and renders what
/// this returns; the validator (ACMEValidator) contacts identifiers.
public final class ACMEService: Sendable {
    let settings: ACMESettings
    let store: any ACMEStore
    let issuance: IssuanceService
    let validator: ACMEValidator
    let logger: Logger
    let issuanceLimiter: RateLimiter
    private let validationsRunning = Mutex(0)
    private let now: @Sendable () -> Date

    /// Pending objects live a day; a validated authorization is reused by its account for a week.
    static let pendingLifetime: TimeInterval = 86_400
    static let validAuthorizationLifetime: TimeInterval = 7 * 86_400
    /// Validations running at once; past this a challenge waits (the client keeps polling).
    static let maximumConcurrentValidations = 64

    init(
        settings: ACMESettings, store: any ACMEStore, issuance: IssuanceService, limits: RequestLimits, logger: Logger,
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.settings = settings
        self.store = store
        self.issuance = issuance
        self.logger = logger
        self.now = now
        self.validator = ACMEValidator(settings: settings, logger: logger)
        self.issuanceLimiter = RateLimiter(rate: limits.issuancesPerSecond, burst: limits.issuanceBurst)
    }

    func shutdown() async {
        try? await validator.shutdown()
    }

    func directory(_ name: String) throws(ACMEError) -> ACMEDirectoryPolicy {
        guard let policy = settings.directory(named: name) else {
            throw ACMEError(.malformed, "there is no ACME directory named '\(name)'", status: 404)
        }
        return policy
    }

    static func newID() -> String {
        Base64URL.encode((0..<12).map { _ in UInt8.random(in: 0...255) })
    }

    // MARK: Accounts

    /// newAccount (§7.3): the existing account for this key, or a new one, bound to an EAB key when given.
    func newAccount(
        directory: ACMEDirectoryPolicy, key: JSONWebKey, payload: [String: Any], url: String
    ) async throws -> (account: ACMEAccount, created: Bool) {
        if let existing = try await store.account(directory: directory.name, thumbprint: key.thumbprint) {
            guard existing.status == .valid else {
                throw ACMEError(.unauthorized, "the account for this key is \(existing.status.rawValue)")
            }
            return (existing, false)
        }
        if payload["onlyReturnExisting"] as? Bool == true {
            throw ACMEError(.accountDoesNotExist, "no account in directory '\(directory.name)' has this key")
        }
        if directory.termsOfService != nil, payload["termsOfServiceAgreed"] as? Bool != true {
            throw ACMEError(
                .userActionRequired,
                "agree to the terms of service at \(directory.termsOfService ?? "") (termsOfServiceAgreed: true)")
        }
        let contact = try Self.contacts(payload["contact"])
        var externalKeyID: String?
        if let binding = payload["externalAccountBinding"] {
            guard let object = binding as? [String: Any] else {
                throw ACMEError(.malformed, "externalAccountBinding must be a JWS object")
            }
            let keyID = Self.bindingKeyID(object)
            let found = try await keyID.asyncMap { try await store.externalKey(id: $0) } ?? nil
            let usable = found.flatMap {
                $0.key.directory == directory.name && $0.key.revokedAt == nil ? $0.macKey : nil
            }
            externalKeyID = try ExternalAccountBinding.verify(object, outerURL: url, accountKey: key) { id in
                id == keyID ? usable : nil
            }
        } else if directory.externalAccountRequired {
            throw ACMEError(
                .externalAccountRequired,
                "directory '\(directory.name)' requires an external account binding (ask an administrator for an EAB key id and MAC key)"
            )
        }
        let account = ACMEAccount(
            id: Self.newID(), directory: directory.name, thumbprint: key.thumbprint, jwk: Self.jsonText(key.json),
            status: .valid, contact: contact, externalKeyID: externalKeyID, createdAt: now()
        )
        return try await store.createAccount(account)
    }

    /// The key id an EAB JWS names, read before its MAC is checked (to find the MAC key).
    private static func bindingKeyID(_ object: [String: Any]) -> String? {
        guard let text = object["protected"] as? String, let data = Base64URL.decode(text),
            let header = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        else { return nil }
        return header["kid"] as? String
    }

    static func contacts(_ value: Any?) throws(ACMEError) -> [String] {
        guard let value else { return [] }
        guard let list = value as? [String] else { throw ACMEError(.malformed, "contact must be a list of strings") }
        guard list.count <= 10 else { throw ACMEError(.invalidContact, "at most 10 contacts") }
        for contact in list {
            guard contact.lowercased().hasPrefix("mailto:") else {
                throw ACMEError(
                    .unsupportedContact, "contact '\(contact)' is not a mailto: URI; only e-mail contacts are supported"
                )
            }
            let address = contact.dropFirst("mailto:".count)
            let parts = address.split(separator: "@", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !address.contains(","),
                !address.contains("?"), address.count <= 254
            else {
                throw ACMEError(.invalidContact, "contact '\(contact)' is not one e-mail address")
            }
        }
        return list
    }

    /// Account update (§7.3.2) and deactivation (§7.3.6).
    func updateAccount(_ account: ACMEAccount, payload: [String: Any]) async throws -> ACMEAccount {
        var contact: [String]?
        if payload["contact"] != nil { contact = try Self.contacts(payload["contact"]) }
        var status: AccountStatus?
        if let requested = payload["status"] {
            guard requested as? String == "deactivated" else {
                throw ACMEError(.malformed, "an account's status may only be set to deactivated")
            }
            status = .deactivated
        }
        guard contact != nil || status != nil else { return account }
        guard let updated = try await store.updateAccount(id: account.id, contact: contact, status: status) else {
            throw ACMEError(.accountDoesNotExist, "the account no longer exists")
        }
        return updated
    }

    /// keyChange (§7.3.5): the inner JWS, signed by the new key, names the account and its old key.
    func changeKey(_ account: ACMEAccount, oldKey: JSONWebKey, accountURL: String, payload: Data, url: String)
        async throws -> String?
    {
        let inner = try FlattenedJWS(body: payload)
        guard let newKey = inner.jwk else {
            throw ACMEError(.malformed, "the inner JWS of keyChange must carry the new key as jwk")
        }
        guard inner.nonce == nil else {
            throw ACMEError(.malformed, "the inner JWS of keyChange must not have a nonce")
        }
        guard inner.url == url else { throw ACMEError(.malformed, "the inner JWS's url is not the keyChange URL") }
        try inner.verify(with: newKey)
        let object = try inner.payloadObject()
        guard object["account"] as? String == accountURL else {
            throw ACMEError(.malformed, "keyChange names another account than the one signing")
        }
        guard let old = object["oldKey"] as? [String: Any], (try? JSONWebKey(json: old)) == oldKey else {
            throw ACMEError(.malformed, "keyChange's oldKey is not the account's current key")
        }
        guard newKey != oldKey else { throw ACMEError(.malformed, "the new key is the current key") }
        return try await store.changeAccountKey(
            id: account.id, jwk: Self.jsonText(newKey.json), thumbprint: newKey.thumbprint)
    }

    // MARK: Orders

    func newOrder(directory: ACMEDirectoryPolicy, account: ACMEAccount, payload: [String: Any]) async throws -> (
        ACMEOrder, [ACMEAuthorization]
    ) {
        try Self.checkMayOrder(account)
        guard let list = payload["identifiers"] as? [[String: Any]], !list.isEmpty else {
            throw ACMEError(.malformed, "identifiers must be a non-empty list of {type, value}")
        }
        guard list.count <= IssuanceRules.maximumNames else {
            throw ACMEError(
                .rejectedIdentifier,
                "an order may have at most \(IssuanceRules.maximumNames) identifiers, this one has \(list.count)")
        }
        var identifiers: [ACMEIdentifier] = []
        var problems: [ACMEError] = []
        for entry in list {
            guard let type = entry["type"] as? String, let value = entry["value"] as? String else {
                throw ACMEError(.malformed, "each identifier needs a type and a value, both strings")
            }
            do {
                let identifier = try ACMEIdentifier.parse(type: type, value: value)
                if !identifiers.contains(identifier) { identifiers.append(identifier) }
            } catch {
                problems.append(error)
            }
        }
        if problems.count == 1 { throw problems[0] }
        if !problems.isEmpty {
            throw ACMEError(problems[0].kind, "\(problems.count) identifiers are invalid", subproblems: problems)
        }
        let issuedAt = now()
        if let text = payload["notBefore"] {
            // Certificates start when they are signed; a start in the past or now is what they get anyway.
            guard let text = text as? String, let date = RFC3339.parse(text) else {
                throw ACMEError(.malformed, "notBefore must be an RFC 3339 date-time")
            }
            guard date <= issuedAt.addingTimeInterval(60) else {
                throw ACMEError(
                    .malformed, "notBefore in the future is not supported: certificates start when they are issued")
            }
        }
        var notAfter: Date?
        if let text = payload["notAfter"] {
            guard let text = text as? String, let date = RFC3339.parse(text) else {
                throw ACMEError(.malformed, "notAfter must be an RFC 3339 date-time")
            }
            let lifetime = Duration.seconds(date.timeIntervalSince(issuedAt))
            guard lifetime >= IssuancePolicy.minimumLifetime, lifetime <= directory.maximumLifetime else {
                throw ACMEError(
                    .malformed,
                    "notAfter must be between \(Lifetime.format(IssuancePolicy.minimumLifetime)) and \(Lifetime.format(directory.maximumLifetime)) from now"
                )
            }
            notAfter = date
        }
        var profile = directory.profiles[0]
        if let name = payload["profile"] {
            guard let name = name as? String, let chosen = CertificateProfile(requested: name),
                directory.profiles.contains(chosen)
            else {
                throw ACMEError(
                    .invalidProfile,
                    "profile '\(payload["profile"] ?? "")' is not offered; this directory offers \(directory.profiles.map(\.rawValue).joined(separator: ", "))"
                )
            }
            profile = chosen
        }
        let accountNames = try account.allowedNames.map { text throws(ACMEError) in
            do { return try NamePattern(text) } catch {
                throw ACMEError(.serverInternal, "the account's EAB key holds a bad pattern: \(error)")
            }
        }
        try directory.check(identifiers, accountNames: accountNames)
        var replaces: String?
        if let certificateID = payload["replaces"] {
            guard let certificateID = certificateID as? String else {
                throw ACMEError(.malformed, "replaces must be a certificate identifier string")
            }
            try await checkReplacement(certificateID, account: account, identifiers: identifiers)
            replaces = certificateID
        }

        let orderID = Self.newID()
        var authorizations: [ACMEAuthorization] = []
        var created: [ACMEAuthorization] = []
        var events: [AuditEvent] = []
        var seen = Set<ACMEIdentifier>()
        for identifier in identifiers {
            let target = identifier.authorizationIdentifier, wildcard = identifier.isWildcard
            guard seen.insert(wildcard ? ACMEIdentifier(type: .dns, value: "*." + target.value) : target).inserted
            else { continue }
            if let reused = try await store.reusableAuthorization(
                accountID: account.id, identifier: target, wildcard: wildcard, now: issuedAt)
            {
                authorizations.append(reused)
                continue
            }
            var authorization = ACMEAuthorization(
                id: Self.newID(), accountID: account.id, identifier: target, wildcard: wildcard, status: .pending,
                expires: issuedAt.addingTimeInterval(Self.pendingLifetime), trusted: false, challenges: []
            )
            if directory.isTrusted(identifier) {
                authorization.status = .valid
                authorization.trusted = true
                authorization.expires = issuedAt.addingTimeInterval(Self.validAuthorizationLifetime)
                events.append(
                    AuditEvent(
                        at: issuedAt, actor: account.requester, action: "acme.authorization.trusted", outcome: .success,
                        subject: authorization.id, names: [identifier.value],
                        reason: "directory '\(directory.name)' trusts this name without a challenge"))
            } else {
                let token = ChallengeType.newToken()
                authorization.challenges = directory.challengeTypes(for: target, wildcard: wildcard).map {
                    ACMEChallenge(type: $0, token: token)
                }
            }
            authorizations.append(authorization)
            created.append(authorization)
        }
        var order = ACMEOrder(
            id: orderID, accountID: account.id, status: .pending, identifiers: identifiers,
            authorizationIDs: authorizations.map(\.id),
            notBefore: nil, notAfter: notAfter, profile: profile.rawValue, replaces: replaces,
            expires: issuedAt.addingTimeInterval(Self.pendingLifetime), createdAt: issuedAt
        )
        if authorizations.allSatisfy({ $0.status == .valid }) { order.status = .ready }
        try await store.createOrder(order, authorizations: created, events: events)
        return (order, authorizations)
    }

    static func checkMayOrder(_ account: ACMEAccount) throws(ACMEError) {
        guard account.status == .valid else {
            throw ACMEError(.unauthorized, "the account is \(account.status.rawValue)")
        }
        guard !account.externalKeyRevoked else {
            throw ACMEError(
                .unauthorized, "the account's external account key \(account.externalKeyID ?? "") was revoked")
        }
    }

    /// RFC 9773 §5: the replaced certificate is this CA's, was issued to this account, shares an identifier with the
    /// order, and no other live order replaces it.
    private func checkReplacement(_ certificateID: String, account: ACMEAccount, identifiers: [ACMEIdentifier])
        async throws
    {
        guard let (keyID, serial) = RenewalInfo.parse(certificateID) else {
            throw ACMEError(
                .malformed,
                "replaces '\(certificateID)' is not a certificate identifier (base64url AKI '.' base64url serial)")
        }
        guard keyID == issuance.ca.keyIdentifier, let entry = try await issuance.certificate(serial: serial) else {
            throw ACMEError(.malformed, "replaces names a certificate this CA did not issue")
        }
        guard entry.requester == account.requester else {
            throw ACMEError(.unauthorized, "replaces names a certificate issued to another account")
        }
        let names = Set(entry.dnsNames + entry.ipAddresses)
        guard identifiers.contains(where: { names.contains($0.value) }) else {
            throw ACMEError(.malformed, "the order shares no identifier with the certificate it replaces")
        }
        guard try await store.replacingOrders(certificateID: certificateID).isEmpty else {
            throw ACMEError(.alreadyReplaced, "certificate \(certificateID) is already being replaced by another order")
        }
    }

    func order(id: String, account: ACMEAccount) async throws -> (ACMEOrder, [ACMEAuthorization]) {
        guard let order = try await store.order(id: id) else {
            throw ACMEError(.malformed, "no order \(id)", status: 404)
        }
        guard order.accountID == account.id else {
            throw ACMEError(.unauthorized, "order \(id) belongs to another account")
        }
        return (order, try await store.authorizations(ids: order.authorizationIDs))
    }

    func orders(account: ACMEAccount) async throws -> [String] {
        try await store.orders(accountID: account.id, limit: 1000)
    }

    func status(of order: ACMEOrder, _ authorizations: [ACMEAuthorization]) -> OrderStatus {
        let date = now()
        return ACMEStateMachine.orderStatus(
            stored: order.status, expires: order.expires,
            authorizations: authorizations.map { status(of: $0, at: date) }, now: date)
    }

    func status(of authorization: ACMEAuthorization, at date: Date? = nil) -> AuthorizationStatus {
        ACMEStateMachine.authorizationStatus(
            stored: authorization.status, expires: authorization.expires, now: date ?? now())
    }

    // MARK: Authorizations and challenges

    func authorization(id: String, account: ACMEAccount) async throws -> ACMEAuthorization {
        guard let authorization = try await store.authorization(id: id) else {
            throw ACMEError(.malformed, "no authorization \(id)", status: 404)
        }
        guard authorization.accountID == account.id else {
            throw ACMEError(.unauthorized, "authorization \(id) belongs to another account")
        }
        return authorization
    }

    /// Authorization deactivation (§7.5.2).
    func deactivate(_ authorization: ACMEAuthorization) async throws -> ACMEAuthorization {
        let current = status(of: authorization)
        guard current == .pending || current == .valid else {
            throw ACMEError(.malformed, "a \(current.rawValue) authorization cannot be deactivated")
        }
        var changed = authorization
        changed.status = .deactivated
        guard try await store.updateAuthorization(changed, expected: authorization.status) else {
            throw ACMEError(.malformed, "the authorization changed meanwhile; read it again")
        }
        return changed
    }

    /// A client says a challenge is ready (§7.5.1): it moves to `processing` and is validated in the background,
    /// or, in an always-valid test directory, passes at once. Asking again returns the current state.
    func respond(
        to type: ChallengeType, of authorizationID: String, account: ACMEAccount, directory: ACMEDirectoryPolicy
    ) async throws -> (ACMEAuthorization, ACMEChallenge) {
        try Self.checkMayOrder(account)
        var authorization = try await authorization(id: authorizationID, account: account)
        guard let index = authorization.challenges.firstIndex(where: { $0.type == type }) else {
            throw ACMEError(
                .malformed, "authorization \(authorizationID) has no \(type.rawValue) challenge", status: 404)
        }
        guard status(of: authorization) == .pending, authorization.challenges[index].status == .pending else {
            return (authorization, authorization.challenges[index])
        }
        let date = now()
        if directory.alwaysValid {
            authorization.challenges[index].status = .valid
            authorization.challenges[index].validated = date
            authorization.status = .valid
            authorization.expires = date.addingTimeInterval(Self.validAuthorizationLifetime)
        } else {
            authorization.challenges[index].status = .processing
        }
        guard try await store.updateAuthorization(authorization, expected: .pending) else {
            let current = try await self.authorization(id: authorizationID, account: account)
            return (current, current.challenges.first { $0.type == type } ?? authorization.challenges[index])
        }
        if !directory.alwaysValid {
            startValidation(authorization, type: type, thumbprint: account.thumbprint)
        }
        return (authorization, authorization.challenges[index])
    }

    private func startValidation(_ authorization: ACMEAuthorization, type: ChallengeType, thumbprint: String) {
        Task {
            while !validationsRunning.withLock({ running in
                guard running < Self.maximumConcurrentValidations else { return false }
                running += 1
                return true
            }) {
                try? await Task.sleep(for: .milliseconds(50))
            }
            defer { validationsRunning.withLock { $0 -= 1 } }
            await validate(authorization, type: type, thumbprint: thumbprint)
        }
    }

    private func validate(_ authorization: ACMEAuthorization, type: ChallengeType, thumbprint: String) async {
        guard let index = authorization.challenges.firstIndex(where: { $0.type == type }) else { return }
        let challenge = authorization.challenges[index]
        let keyAuthorization = ChallengeType.keyAuthorization(token: challenge.token, accountThumbprint: thumbprint)
        let failure = await validator.validate(
            type, identifier: authorization.identifier, token: challenge.token, keyAuthorization: keyAuthorization)
        var result = authorization
        let date = now()
        if let failure {
            result.challenges[index].status = .invalid
            result.challenges[index].error = ACMEStoredProblem(failure)
            result.status = .invalid
        } else {
            result.challenges[index].status = .valid
            result.challenges[index].validated = date
            result.status = .valid
            result.expires = date.addingTimeInterval(Self.validAuthorizationLifetime)
        }
        do {
            _ = try await store.updateAuthorization(result, expected: .pending)
            logger.info(
                "ACME challenge validated",
                metadata: [
                    "authorization": "\(authorization.id)", "identifier": "\(authorization.identifier.value)",
                    "type": "\(type.rawValue)",
                    "result": "\(failure.map { "invalid: \($0)" } ?? "valid")",
                ])
        } catch {
            logger.error(
                "could not record a challenge's result; it stays processing until the next start",
                metadata: ["authorization": "\(authorization.id)", "error": "\(error)"])
        }
    }

    /// Challenges left `processing` by a stop are validated again.
    func resumeValidations() async {
        do {
            for authorization in try await store.challengesInProgress() {
                guard let challenge = authorization.challenges.first(where: { $0.status == .processing }),
                    let account = try await store.account(id: authorization.accountID)
                else { continue }
                startValidation(authorization, type: challenge.type, thumbprint: account.thumbprint)
            }
        } catch {
            logger.error("could not resume ACME validations", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Finalization and certificates

    /// finalize (§7.4): the CSR must name exactly the order's identifiers (CN and subjectAltNames together) with a
    /// key that is not the account's; then the issuance pipeline signs it and records the certificate and the
    /// order's completion in one transaction.
    func finalize(
        orderID: String, account: ACMEAccount, accountKey: JSONWebKey, directory: ACMEDirectoryPolicy,
        payload: [String: Any]
    ) async throws -> (ACMEOrder, [ACMEAuthorization]) {
        try Self.checkMayOrder(account)
        let (order, authorizations) = try await self.order(id: orderID, account: account)
        let current = status(of: order, authorizations)
        guard current == .ready else {
            throw ACMEError(
                .orderNotReady,
                "order \(orderID) is \(current.rawValue), not ready"
                    + (current == .pending ? ": complete its authorizations first" : ""))
        }
        guard let text = payload["csr"] as? String, let der = Base64URL.decode(text) else {
            throw ACMEError(.malformed, "csr must be a base64url-encoded DER PKCS#10 request")
        }
        let csr: InspectedRequest
        do {
            csr = try InspectedRequest(der: Array(der))
        } catch {
            throw ACMEError(.badCSR, "the CSR is refused: \(error)")
        }
        var named = Set(csr.requestedDNSNames.map { $0.lowercased() } + csr.requestedIPAddresses.map(\.description))
        if let commonName = csr.commonName {
            named.insert(IPAddress(commonName)?.description ?? commonName.lowercased())
        }
        let expected = Set(order.identifiers.map(\.value))
        guard named == expected else {
            throw ACMEError(
                .badCSR,
                "the CSR names \(named.sorted().joined(separator: ", ")); the order is for \(expected.sorted().joined(separator: ", "))"
            )
        }
        var spki = DER.Serializer()
        try spki.serialize(csr.publicKey)
        guard spki.serializedBytes != accountKey.subjectPublicKeyInfo else {
            throw ACMEError(.badCSR, "the CSR's key is the account key; certificates need a key of their own")
        }
        if let wait = issuanceLimiter.take(account.requester) {
            throw ACMEError(
                .rateLimited,
                "too many certificates for this account; try again in \(Int(wait.timeInterval.rounded(.up))) s",
                retryAfter: max(1, Int(wait.timeInterval.rounded(.up))))
        }
        guard try await store.beginFinalization(orderID: orderID) else {
            throw ACMEError(.orderNotReady, "order \(orderID) is already being finalized")
        }
        let profile = order.profile.flatMap(CertificateProfile.init(rawValue:)) ?? directory.profiles[0]
        let request = IssuanceRequest(
            csrPEM: PEM.encode(Array(der), type: "CERTIFICATE REQUEST"),
            dnsNames: order.identifiers.filter { $0.type == .dns }.map(\.value),
            ipAddresses: order.identifiers.filter { $0.type == .ip }.map(\.value),
            duration: order.notAfter.map { "\(max(1, Int($0.timeIntervalSince(now()).rounded())))s" },
            profile: profile
        )
        do {
            _ = try await issuance.issue(request, for: try caller(for: account, directory: directory)) { serial in
                .completeOrder(orderID: orderID, serial: serial)
            }
        } catch let refusal as IssuanceRefusal {
            try? await store.failOrder(orderID: orderID, error: nil, invalid: false)
            if case .policy(.namesNotAllowed) = refusal { throw ACMEError(.rejectedIdentifier, refusal.description) }
            throw ACMEError(.badCSR, refusal.description)
        } catch {
            try? await store.failOrder(orderID: orderID, error: nil, invalid: false)
            logger.error(
                "ACME finalization failed; the order is ready again",
                metadata: ["order": "\(orderID)", "error": "\(error)"])
            throw ACMEError(
                .serverInternal, "the certificate could not be issued now (\(error)); finalize again shortly",
                status: 503, retryAfter: 5)
        }
        return try await self.order(id: orderID, account: account)
    }

    /// Who the issuance pipeline sees: the account as requester, under the directory's policy narrowed to the
    /// account's EAB key's names.
    func caller(for account: ACMEAccount, directory: ACMEDirectoryPolicy) throws -> Caller {
        let names =
            account.allowedNames.isEmpty ? directory.allowedNames : try account.allowedNames.map { try NamePattern($0) }
        return Caller(
            identity: account.requester,
            policy: IssuancePolicy(
                allowedNames: names, allowedProfiles: Set(directory.profiles),
                maximumLifetime: directory.maximumLifetime, defaultLifetime: directory.defaultLifetime
            ))
    }

    /// The chain of a certificate this account was issued: leaf and intermediates (§7.4.2).
    func chain(serial: String, account: ACMEAccount) async throws -> String {
        guard let entry = try await issuance.certificate(serial: serial) else {
            throw ACMEError(.malformed, "no certificate \(serial)", status: 404)
        }
        guard entry.requester == account.requester else {
            throw ACMEError(.unauthorized, "certificate \(serial) was issued to another account")
        }
        return issuance.chainPEM(of: entry)
    }

    // MARK: Revocation and renewal information

    enum RevocationSigner {
        case account(ACMEAccount)
        case certificateKey(JSONWebKey)
    }

    /// revokeCert (§7.6), by the account the certificate was issued to, an account holding valid authorizations for
    /// all its names, or the certificate's own key.
    func revoke(payload: [String: Any], signer: RevocationSigner) async throws {
        guard let text = payload["certificate"] as? String, let der = Base64URL.decode(text),
            let certificate = try? Certificate(derEncoded: Array(der))
        else {
            throw ACMEError(.malformed, "certificate must be a base64url-encoded DER certificate")
        }
        let code = payload["reason"] == nil ? 0 : (payload["reason"] as? Int ?? -1)
        guard let reason = RevocationReason(code: code), reason.mayBeRequested else {
            throw ACMEError(
                .badRevocationReason,
                "reason \(code) is not accepted; use 0 (unspecified), 1 (keyCompromise), 3 (affiliationChanged), 4 (superseded), 5 (cessationOfOperation) or 9 (privilegeWithdrawn)"
            )
        }
        let serial = SerialNumbers.hex(certificate.serialNumber)
        guard let entry = try await issuance.certificate(serial: serial), entry.der == Array(der) else {
            throw ACMEError(.malformed, "this CA did not issue that certificate", status: 404)
        }
        let actor: String
        switch signer {
        case .account(let account):
            var allowed = entry.requester == account.requester
            if !allowed {
                allowed = true
                for name in entry.dnsNames + entry.ipAddresses {
                    let identifier = ACMEIdentifier(type: IPAddress(name) == nil ? .dns : .ip, value: name)
                    if try await store.reusableAuthorization(
                        accountID: account.id, identifier: identifier.authorizationIdentifier,
                        wildcard: identifier.isWildcard, now: now().addingTimeInterval(-3600)) == nil
                    {
                        allowed = false
                        break
                    }
                }
            }
            guard allowed else {
                throw ACMEError(
                    .unauthorized,
                    "this account neither was issued the certificate nor holds authorizations for all its names")
            }
            actor = account.requester
        case .certificateKey(let key):
            var spki = DER.Serializer()
            try spki.serialize(certificate.publicKey)
            guard spki.serializedBytes == key.subjectPublicKeyInfo else {
                throw ACMEError(.unauthorized, "the request is not signed by the certificate's key")
            }
            actor = "acme:certificate-key:\(key.thumbprint)"
        }
        switch try await issuance.revoke(serial: serial, reason: reason, by: actor) {
        case .revoked: return
        case .alreadyRevoked: throw ACMEError(.alreadyRevoked, "certificate \(serial) is already revoked")
        case .expired: throw ACMEError(.malformed, "certificate \(serial) has expired; there is nothing left to revoke")
        case .unknown: throw ACMEError(.malformed, "this CA did not issue that certificate", status: 404)
        }
    }

    /// renewalInfo (RFC 9773 §4.2) for a certificate this CA issued.
    func renewalWindow(certificateID: String) async throws -> (start: Date, end: Date) {
        guard let (keyID, serial) = RenewalInfo.parse(certificateID) else {
            throw ACMEError(
                .malformed, "'\(certificateID)' is not a certificate identifier (base64url AKI '.' base64url serial)")
        }
        guard keyID == issuance.ca.keyIdentifier, let entry = try await issuance.certificate(serial: serial) else {
            throw ACMEError(.malformed, "this CA issued no certificate \(certificateID)", status: 404)
        }
        let advanced =
            entry.storedStatus == .revoked ? entry.revokedAt : try await store.renewalAdvancedAt(serial: serial)
        return RenewalInfo.window(notBefore: entry.notBefore, notAfter: entry.notAfter, advancedAt: advanced)
    }

    static func jsonText(_ object: [String: String]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}

extension Optional {
    fileprivate func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}

/// RFC 3339 date-times as ACME sends and expects them: the API's own transcoder (any offset, fractional seconds).
enum RFC3339 {
    static func parse(_ text: String) -> Date? {
        try? RFC3339DateTranscoder().decode(text)
    }

    static func format(_ date: Date) -> String {
        (try? RFC3339DateTranscoder().encode(date)) ?? date.formatted(.iso8601)
    }
}
