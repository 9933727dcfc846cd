import Crypto
import Foundation
import Logging
import SignetAuthority
import SignetKubernetes
import Synchronization

/// Checks Kubernetes service-account tokens presented as bearer tokens: by TokenReview against the cluster, or
/// offline against the cluster's JWKS. Results are cached briefly (as API tokens are), keyed by the token's hash.
public final class ServiceAccountVerifier: Sendable {
    let settings: ServiceAccountSettings
    private let client: KubernetesClient
    private let logger: Logger
    private let cacheLifetime: Duration
    private let verdicts = Mutex<
        [String: (identity: Result<ServiceAccountIdentity, ServiceAccountTokenError>, expires: ContinuousClock.Instant)]
    >([:])
    private let keySet = Mutex<(keys: JSONWebKeySet, fetched: ContinuousClock.Instant)?>(nil)

    public init(
        settings: ServiceAccountSettings, client: KubernetesClient, logger: Logger,
        cacheLifetime: Duration = .seconds(10)
    ) {
        self.settings = settings
        self.client = client
        self.logger = logger
        self.cacheLifetime = cacheLifetime
    }

    public func identity(of token: String) async throws -> ServiceAccountIdentity {
        let digest = Array(SHA256.hash(data: Array(token.utf8))).hexString
        let now = ContinuousClock.now
        if let cached = verdicts.withLock({ $0[digest] }), cached.expires > now {
            return try cached.identity.get()
        }
        let verdict: Result<ServiceAccountIdentity, ServiceAccountTokenError>
        do {
            verdict = .success(try await check(token))
        } catch let refusal as ServiceAccountTokenError {
            verdict = .failure(refusal)
        }
        verdicts.withLock { verdicts in
            if verdicts.count > 10_000 { verdicts.removeAll() }
            verdicts[digest] = (verdict, now + cacheLifetime)
        }
        return try verdict.get()
    }

    private func check(_ token: String) async throws -> ServiceAccountIdentity {
        switch settings.validation {
        case .tokenReview:
            // Shape, issuer (if configured), audience and time first: a token that cannot pass never reaches the API server.
            try ServiceAccountToken.precheck(token, issuer: settings.issuer, audience: settings.audience)
            let status = try await client.reviewToken(token, audiences: [settings.audience])
            guard status["authenticated"]?.bool == true else {
                throw ServiceAccountTokenError.rejected(status["error"]?.string ?? "not authenticated")
            }
            // An API server that ignores the requested audiences answers without them; such an answer proves nothing
            // about the audience, so it is a failure.
            guard case .array(let audiences)? = status["audiences"] else {
                throw ServiceAccountTokenError.rejected(
                    "the TokenReview answer does not confirm the audience (no status.audiences)")
            }
            guard audiences.contains(.string(settings.audience)) else {
                throw ServiceAccountTokenError.wrongAudience(audiences.compactMap(\.string))
            }
            let username = status["user"]?["username"]?.string
            guard let identity = username.flatMap(ServiceAccountIdentity.init(username:)) else {
                throw ServiceAccountTokenError.notAServiceAccount(username)
            }
            return identity
        case .jwks:
            let first = verify(token, keys: try await currentKeys(refresh: false))
            if case .failure(.unknownKey) = first {
                // The cluster may have rotated its signing key: fetch the set again (at most every 30 s) and retry once.
                return try verify(token, keys: try await currentKeys(refresh: true)).get()
            }
            return try first.get()
        }
    }

    private func verify(_ token: String, keys: JSONWebKeySet) -> Result<
        ServiceAccountIdentity, ServiceAccountTokenError
    > {
        Result { () throws(ServiceAccountTokenError) in
            try ServiceAccountToken.verify(
                token, keys: keys, issuer: settings.resolvedIssuer, audience: settings.audience)
        }
    }

    /// The cluster's JWKS, cached for an hour; `refresh` asks again unless the last fetch is under 30 s old.
    private func currentKeys(refresh: Bool) async throws -> JSONWebKeySet {
        let now = ContinuousClock.now
        if let cached = keySet.withLock({ $0 }), now - cached.fetched < (refresh ? .seconds(30) : .seconds(3600)) {
            return cached.keys
        }
        let keys = try JSONWebKeySet(try await client.document("/openid/v1/jwks"))
        logger.info("fetched the cluster's service-account keys", metadata: ["cluster": "\(settings.cluster)"])
        keySet.withLock { $0 = (keys, now) }
        return keys
    }
}
