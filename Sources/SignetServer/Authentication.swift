import Crypto
import Foundation
import SignetAuthority
import SignetKubernetes
import SignetLedger
import Synchronization
import X509

/// Who is asking, and what they may be issued.
public struct Caller: Sendable, Equatable {
    /// How the requester is recorded in the ledger: `token:NAME` or `certificate:SUBJECT`.
    public let identity: String
    public let policy: IssuancePolicy
    /// Reads every tenant's certificates and managed certificates; every other caller reads its own.
    public var isAuditor = false
    /// Revokes any tenant's certificate; every other caller revokes the certificates it was issued.
    public var isAdministrator = false

    public var mayIssue: Bool { !policy.allowedNames.isEmpty }

    public init(identity: String, policy: IssuancePolicy, isAuditor: Bool = false, isAdministrator: Bool = false) {
        self.identity = identity
        self.policy = policy
        self.isAuditor = isAuditor
        self.isAdministrator = isAdministrator
    }
}

/// What a request presented, captured by the HTTP layer before the OpenAPI handlers run (they cannot see headers
/// or the TLS connection themselves).
public struct PresentedCredentials: Sendable {
    public var authorization: String?
    /// The verified client certificate, when the connection used mutual TLS.
    public var clientCertificate: Certificate?
    /// `Signet-On-Behalf-Of`: the namespace a controller's service account asks for.
    public var onBehalfOf: String?
    /// The peer's IP address, for the limit on failed authentications.
    public var sourceAddress: String?

    @TaskLocal public static var current = PresentedCredentials()
}

/// API tokens: `sgt_` and 43 characters of base64url (32 random bytes). Only the SHA-256 is ever stored.
public enum APITokens {
    public static let prefix = "sgt_"

    public static func mint() -> (token: String, sha256: String) {
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        let token = prefix + Base64URL.encode(bytes)
        return (token, digest(token))
    }

    public static func digest(_ token: String) -> String {
        Array(SHA256.hash(data: Array(token.utf8))).hexString
    }

    public static func policy(of token: TokenEntry, defaultLifetime: Duration) throws -> IssuancePolicy {
        IssuancePolicy(
            allowedNames: try token.allowedNames.map { try NamePattern($0) },
            allowedProfiles: Set(token.allowedProfiles),
            maximumLifetime: token.maximumLifetime,
            defaultLifetime: defaultLifetime,
            allowedTargets: try token.allowedTargets.map { try TargetPattern($0) }
        )
    }
}

/// A client-certificate identity configured in `signet.yaml`: the full subject DN or a URI SAN, the subject DN of
/// the CA that must have issued it, and the policy it gets. Never a common name alone: any CA a gateway or Signet
/// trusts could put that name in a certificate.
public struct ClientCertificatePolicy: Sendable, Equatable {
    public enum Match: Sendable, Equatable, CustomStringConvertible {
        /// The subject DN as RFC 4514 text (`CN=ops-robot,O=Example`), normalized by `DistinguishedNames`.
        case subject(String)
        /// A uniformResourceIdentifier subjectAltName (`spiffe://example.org/ops`).
        case uri(String)

        public var description: String {
            switch self {
            case .subject(let name): name
            case .uri(let uri): uri
            }
        }
    }

    public var match: Match
    /// The issuing CA's subject DN, normalized.
    public var issuer: String
    /// The key of that CA, resolved at start from `tls.clientCA` (`SignetServer.resolvingIssuers`): a name is text any
    /// CA in the bundle could take, so a certificate is this identity only if that key signed it. Nil matches nothing.
    public var issuerKey: Certificate.PublicKey?
    public var policy: IssuancePolicy

    public init(match: Match, issuer: String, policy: IssuancePolicy) {
        self.match = match
        self.issuer = issuer
        self.policy = policy
    }

    /// Whether a verified client certificate is this identity: issued by the named CA, and with this subject or URI.
    func matches(_ certificate: Certificate) -> Bool {
        guard DistinguishedNames.normalized(certificate.issuer.description) == issuer, let issuerKey,
            issuerKey.isValidSignature(certificate.signature, for: certificate)
        else { return false }
        switch match {
        case .subject(let subject):
            return DistinguishedNames.normalized(certificate.subject.description) == subject
        case .uri(let uri):
            guard let names = try? certificate.extensions.subjectAlternativeNames else { return false }
            return names.contains { if case .uniformResourceIdentifier(let value) = $0 { value == uri } else { false } }
        }
    }
}

/// Distinguished names as RFC 4514 text, in one spelling: swift-certificates writes them most-specific first
/// (`CN=a,O=b`, as `openssl x509 -nameopt RFC2253` does); configuration may add spaces after the commas.
public enum DistinguishedNames {
    public static func normalized(_ text: String) -> String {
        var out = ""
        var escaped = false
        var skippingSpace = false
        for character in text {
            if skippingSpace, character == " " { continue }
            skippingSpace = false
            out.append(character)
            if escaped {
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "," {
                skippingSpace = true
            }
        }
        return out.trimmingCharacters(in: .whitespaces)
    }
}

/// Turns presented credentials into a `Caller`. Token lookups are cached for `cacheLifetime` so that the hot
/// issuance path does not read the token table on every request; a revoked token stops working within that time.
public final class CallerAuthenticator: Sendable {
    private let ledger: any TokenStore
    private let defaultLifetime: Duration
    private let cacheLifetime: Duration
    private let certificatePolicies: [ClientCertificatePolicy]
    private let serviceAccounts: ServiceAccountVerifier?
    private let cache = Mutex<
        [String: (caller: Result<Caller, AuthenticationError>, expires: ContinuousClock.Instant)]
    >([:])
    /// Failed authentications per source address: past the limit, the address is refused before any lookup.
    private let failures: RateLimiter
    private let onRateLimited: @Sendable () -> Void

    public init(
        ledger: any TokenStore, defaultLifetime: Duration, cacheLifetime: Duration = .seconds(1),
        certificatePolicies: [ClientCertificatePolicy] = [],
        serviceAccounts: ServiceAccountVerifier? = nil, failedAuthenticationsPerMinute: Double = 60,
        onRateLimited: @escaping @Sendable () -> Void = {}
    ) {
        self.failures = RateLimiter(rate: failedAuthenticationsPerMinute / 60, burst: failedAuthenticationsPerMinute)
        self.onRateLimited = onRateLimited
        self.serviceAccounts = serviceAccounts
        self.ledger = ledger
        self.defaultLifetime = defaultLifetime
        self.cacheLifetime = cacheLifetime
        self.certificatePolicies = certificatePolicies
    }

    /// The caller, or why not. An address that failed too often recently is refused first (429), so guessing tokens
    /// or sending forged service-account tokens cannot become a stream of ledger lookups and TokenReviews.
    public func authenticate(_ credentials: PresentedCredentials) async throws -> Caller {
        let source = credentials.sourceAddress ?? "unknown"
        if let wait = failures.wait(source) {
            onRateLimited()
            throw RateLimited(
                limit: "authentication", retryAfter: wait,
                description: "too many failed authentications from \(source); try again later")
        }
        do {
            return try await identify(credentials)
        } catch let error as AuthenticationError {
            _ = failures.take(source)
            throw error
        }
    }

    private func identify(_ credentials: PresentedCredentials) async throws -> Caller {
        if let header = credentials.authorization {
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].isEmpty else {
                throw AuthenticationError.malformed
            }
            let token = String(parts[1]).trimmingCharacters(in: .whitespaces)
            if !token.hasPrefix(APITokens.prefix), let serviceAccounts, ServiceAccountToken.looksLikeJWT(token) {
                return try await caller(
                    forServiceAccountToken: token, verifier: serviceAccounts, onBehalfOf: credentials.onBehalfOf)
            }
            return try await caller(forToken: token)
        }
        if let certificate = credentials.clientCertificate,
            let identity = certificatePolicies.first(where: { $0.matches(certificate) })
        {
            return Caller(identity: "certificate:\(identity.match)", policy: identity.policy)
        }
        throw AuthenticationError.missing
    }

    /// The policy that `identity` (as recorded with a managed certificate: `token:NAME`, `certificate:SUBJECT-OR-URI`,
    /// `serviceaccount:NS:NAME` or `serviceaccount:NS:NAME for NS2`) holds now, for re-checking renewals made on its
    /// behalf. A revoked or removed credential is `RenewalUnauthorized`.
    func currentPolicy(of identity: String) async throws -> IssuancePolicy {
        let parts = identity.split(separator: ":", maxSplits: 1).map(String.init)
        let kind = parts.first ?? "", name = parts.count == 2 ? parts[1] : ""
        switch kind {
        case "token":
            guard let entry = try await ledger.token(name: name) else {
                throw RenewalUnauthorized("token '\(name)' no longer exists")
            }
            guard entry.revokedAt == nil else { throw RenewalUnauthorized("token '\(name)' has been revoked") }
            return try APITokens.policy(of: entry, defaultLifetime: defaultLifetime)
        case "certificate":
            guard let found = certificatePolicies.first(where: { $0.match.description == name }) else {
                throw RenewalUnauthorized("client-certificate identity '\(name)' is no longer configured")
            }
            return found.policy
        case "serviceaccount":
            let parts = name.components(separatedBy: " for ")
            let account = parts[0].split(separator: ":").map(String.init)
            guard let settings = serviceAccounts?.settings, account.count == 2 else {
                throw RenewalUnauthorized("service account '\(parts[0])' is no longer accepted (serviceAccounts)")
            }
            do {
                return try settings.policy(
                    for: ServiceAccountIdentity(namespace: account[0], name: account[1]),
                    onBehalfOf: parts.count == 2 ? parts[1] : nil
                ).policy
            } catch {
                throw RenewalUnauthorized(error.description)
            }
        default:
            throw RenewalUnauthorized("'\(identity)' is not a credential Signet knows")
        }
    }

    /// A service account's caller: its namespace's policy, or, for a controller asking on behalf of a namespace,
    /// that namespace's. The identity records both, so the ledger says who asked for whom.
    private func caller(forServiceAccountToken token: String, verifier: ServiceAccountVerifier, onBehalfOf: String?)
        async throws -> Caller
    {
        let account: ServiceAccountIdentity
        do {
            account = try await verifier.identity(of: token)
        } catch let refusal as ServiceAccountTokenError {
            throw AuthenticationError.serviceAccount(refusal.description)
        } catch {
            throw AuthenticationUnavailable(cause: "\(error)")
        }
        let identity = "serviceaccount:\(account.namespace):\(account.name)"
        if verifier.settings.auditors.contains(account), onBehalfOf == nil {
            return Caller(
                identity: identity,
                policy: verifier.settings.namespaces[account.namespace] ?? IssuancePolicy(allowedNames: []),
                isAuditor: true)
        }
        let (namespace, policy) = try verifier.settings.policy(for: account, onBehalfOf: onBehalfOf)
        return Caller(
            identity: namespace == account.namespace ? identity : "\(identity) for \(namespace)", policy: policy)
    }

    private func caller(forToken token: String) async throws -> Caller {
        let digest = APITokens.digest(token)
        let now = ContinuousClock.now
        if let cached = cache.withLock({ $0[digest] }), cached.expires > now {
            return try cached.caller.get()
        }
        let result: Result<Caller, AuthenticationError>
        if let entry = try await ledger.token(secretSHA256: digest) {
            if entry.revokedAt != nil {
                result = .failure(.revokedToken(entry.name))
            } else {
                result = .success(
                    Caller(
                        identity: "token:\(entry.name)",
                        policy: try APITokens.policy(of: entry, defaultLifetime: defaultLifetime),
                        isAuditor: entry.auditor,
                        isAdministrator: entry.administrator
                    ))
            }
        } else {
            result = .failure(.unknownToken)
        }
        cache.withLock { cache in
            // Unknown tokens are cached too, so a flood of guesses costs one lookup per distinct guess per period;
            // the bound keeps that flood from growing the cache without limit.
            if cache.count > 10_000 { cache.removeAll() }
            cache[digest] = (result, now + cacheLifetime)
        }
        return try result.get()
    }
}
