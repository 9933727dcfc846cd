import SignetACME
import SignetAuthority
import SignetKeys
import SignetKubernetes
import SignetLedger
import Yams

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

public struct ServiceAccountSettings: Sendable, Equatable {
    public enum Validation: String, Sendable, Equatable {
        /// Ask the API server (TokenReview): also catches tokens of deleted pods. Needs `create` on tokenreviews.
        case tokenReview = "tokenreview"
        /// Check the JWT against the cluster's published keys (/openid/v1/jwks), without a call per token.
        case jwks
    }

    /// The configured cluster whose tokens these are.
    public var cluster: String
    /// The audience the tokens must be projected for.
    public var audience = "signet"
    public var validation: Validation = .tokenReview
    /// The `iss` of the cluster's tokens: required to match when set; offline validation uses the in-cluster
    /// default when it is not (AKS and other managed clusters issue with their OIDC issuer URL: set it there).
    public var issuer: String?
    public var resolvedIssuer: String { issuer ?? "https://kubernetes.default.svc.cluster.local" }
    /// Service accounts that may ask on behalf of another namespace (the renewal controller): the
    /// `Signet-On-Behalf-Of` header names the namespace whose policy applies.
    public var controllers: Set<ServiceAccountIdentity> = []
    /// Service accounts that read every tenant's certificates (an auditing job, a dashboard).
    public var auditors: Set<ServiceAccountIdentity> = []
    /// What a namespace's service accounts (or a controller acting for it) may be issued.
    public var namespaces: [String: IssuancePolicy] = [:]

    public init(cluster: String) {
        self.cluster = cluster
    }

    /// The namespace and policy a service account is issued under: its own namespace's, or, for a listed controller
    /// asking on behalf of another namespace, that namespace's. The one place this rule is stated, for requests and
    /// for renewals made on an account's behalf.
    func policy(for account: ServiceAccountIdentity, onBehalfOf: String?) throws(AuthorizationError) -> (
        namespace: String, policy: IssuancePolicy
    ) {
        let identity = "serviceaccount:\(account.namespace):\(account.name)"
        var namespace = account.namespace
        if let onBehalfOf, onBehalfOf != account.namespace {
            guard controllers.contains(account) else { throw .notAController(identity, onBehalfOf) }
            namespace = onBehalfOf
        }
        guard let policy = namespaces[namespace] else { throw .noNamespacePolicy(identity, namespace) }
        return (namespace, policy)
    }
}
