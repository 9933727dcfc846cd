import Foundation
import Logging
import SignetAuthority
import SignetClient
import SignetKeys
import SignetKubernetes
import SignetOpenAPI
import X509

/// Signet as a cert-manager external issuer. `SignetIssuer` (namespaced) and `SignetClusterIssuer` resources get a
/// `Ready` condition from asking Signet who it takes the controller for; cert-manager `CertificateRequest`s that name
/// them are signed once approved, under the policy of the request's own namespace (the controller acts on its behalf),
/// through the same API, ledger and audit as every other path into Signet.
public final class CertManagerIssuer: Sendable {
    typealias Key = ObjectKey

    let client: KubernetesClient
    let signet: SignetClient
    let settings: ControllerSettings
    let metrics: ControllerMetrics
    let logger: Logger
    let now: @Sendable () -> Date
    let queue = WorkQueue<Key>()
    /// Transient failures per request (by uid), for the backoff before the next attempt.
    let backoff = FailureBackoff()

    public init(
        client: KubernetesClient, signet: SignetClient, settings: ControllerSettings, metrics: ControllerMetrics,
        logger: Logger,
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.client = client
        self.signet = signet
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        self.now = now
    }

    /// Watches and workers until cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                guard await self.waitForCertManager() else { return }
                await self.client.follow(.certificateRequests, namespace: self.settings.namespace) { observed in
                    for object in Self.objects(observed) {
                        await self.queue.add(Key(namespace: object.namespace ?? "", name: object.name))
                    }
                }
            }
            group.addTask {
                await self.client.follow(.signetIssuers, namespace: self.settings.namespace) { observed in
                    if case .deleted = observed { return }
                    for object in Self.objects(observed) { await self.checkIssuer(.signetIssuers, object) }
                }
            }
            if settings.namespace == nil {
                group.addTask {
                    await self.client.follow(.signetClusterIssuers, namespace: nil) { observed in
                        if case .deleted = observed { return }
                        for object in Self.objects(observed) { await self.checkIssuer(.signetClusterIssuers, object) }
                    }
                }
            }
            group.addTask { await self.recheckPeriodically() }
            group.addTask {
                await self.queue.process(workers: self.settings.concurrency, metrics: self.metrics) { key in
                    await self.reconcile(key).map { WorkQueue<Key>.Outcome(after: $0, failed: true) }
                }
            }
        }
    }

    /// cert-manager may be installed after the controller starts, or never: its API is looked for every minute, and
    /// CertificateRequests are watched once it is served.
    private func waitForCertManager() async -> Bool {
        var logged = false
        while !Task.isCancelled {
            if (try? await client.document("/apis/cert-manager.io/v1")) != nil { return true }
            if !logged {
                logger.warning(
                    "cert-manager's API (cert-manager.io/v1) is not served; CertificateRequests are watched once it is (looking every minute)"
                )
                logged = true
            }
            try? await Task.sleep(for: .seconds(60))
        }
        return false
    }

    static func objects(_ observed: KubernetesClient.Observed) -> [KubernetesObject] {
        switch observed {
        case .listed(let items): items
        case .changed(let object), .deleted(let object): [object]
        }
    }

    /// Issuers are checked again now and then (Signet's policy may change without any Kubernetes event), and
    /// requests waiting on an issuer are looked at again.
    private func recheckPeriodically() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.resync)
            for kind in settings.namespace == nil
                ? [ResourceKind.signetIssuers, .signetClusterIssuers] : [.signetIssuers]
            {
                guard
                    let items = try? await client.list(kind, namespace: kind.namespaced ? settings.namespace : nil)
                        .items
                else { continue }
                for item in items { await checkIssuer(kind, item) }
            }
            guard let requests = try? await client.list(.certificateRequests, namespace: settings.namespace).items
            else { continue }
            for request in requests { await queue.add(Key(namespace: request.namespace ?? "", name: request.name)) }
        }
    }

    // MARK: Issuers

    /// Why an issuer cannot be used, or nil with the Ready message when it can.
    func readiness(of kind: ResourceKind, _ issuer: KubernetesObject) async -> (
        ready: Bool, reason: String, message: String
    ) {
        let spec: IssuerSpec
        do {
            spec = try IssuerSpec(issuer)
        } catch {
            return (false, "InvalidSpec", error.description)
        }
        guard IssuerSpec.sameServer(spec.url, signet.base) else {
            return (
                false, "ServerNotAllowed",
                "this controller sends its token only to \(signet.base) (its --server); spec.url \(spec.url) names another server"
            )
        }
        if let audience = spec.audience, audience != settings.tokenAudience {
            return (
                false, "AudienceNotAllowed",
                "the controller's token is for audience \(settings.tokenAudience), not \(audience)"
            )
        }
        do {
            if let bundle = spec.caBundle {
                let trusted = try PEMFiles.certificates(in: bundle, source: "spec.caBundle")
                guard let root = try await signet.caChain().last, trusted.contains(root) else {
                    return (false, "UntrustedServer", "Signet's root certificate is not in spec.caBundle")
                }
            }
            let namespaces: [String?] =
                kind.namespaced ? [issuer.namespace] : spec.namespaces.filter { $0 != "*" }.prefix(20).map { $0 }
            if !kind.namespaced && spec.namespaces.isEmpty {
                return (
                    false, "NoNamespaces",
                    "spec.namespaces names no namespace whose CertificateRequests this issuer serves"
                )
            }
            var granted: [String] = []
            for namespace in namespaces {
                let identity = try await signet.identity(namespace: namespace)
                granted.append("\(identity.identity): \(identity.allow.joined(separator: ", "))")
            }
            if namespaces.isEmpty { _ = try await signet.caChain() }
            return (
                true, "Verified",
                granted.isEmpty
                    ? "Signet at \(signet.base) answers"
                    : "Signet at \(signet.base) issues to " + granted.joined(separator: "; ")
            )
        } catch let failure as SignetClient.Failure {
            return (false, failure.status == nil ? "Unreachable" : "NotTrusted", failure.description)
        } catch {
            return (false, "Unreachable", "\(error)")
        }
    }

    private func checkIssuer(_ kind: ResourceKind, _ issuer: KubernetesObject) async {
        let (ready, reason, message) = await readiness(of: kind, issuer)
        do {
            try await client.updateStatus(kind, namespace: issuer.namespace, name: issuer.name) { status, generation in
                Conditions.set(
                    &status, type: "Ready", status: ready ? "True" : "False", reason: reason, message: message,
                    generation: generation, now: self.now())
            }
        } catch {
            logger.warning(
                "cannot update an issuer's status",
                metadata: ["issuer": "\(issuer.namespace ?? "")/\(issuer.name)", "error": "\(error)"])
        }
    }

    // MARK: CertificateRequests

    /// One request brought forward; returns when to look again (nil: on its next change).
    func reconcile(_ key: Key) async -> Duration? {
        let request: KubernetesObject
        do {
            guard let found = try await client.get(.certificateRequests, namespace: key.namespace, name: key.name)
            else { return nil }
            request = found
        } catch {
            logger.warning("cannot read a CertificateRequest", metadata: ["request": "\(key)", "error": "\(error)"])
            return .seconds(5)
        }
        switch CertificateRequestRules.decide(request) {
        case .notOurs, .finished, .awaitingApproval:
            return nil
        case .denied:
            await finish(
                key, request, reason: "Denied", message: "The CertificateRequest was denied by an approval controller")
            return nil
        case .invalid(let message):
            await finish(key, request, reason: "Failed", message: message)
            return nil
        case .sign(let signing):
            return await sign(key, request, signing)
        }
    }

    private func sign(_ key: Key, _ request: KubernetesObject, _ signing: CertificateRequestRules.SigningRequest) async
        -> Duration?
    {
        let kind: ResourceKind = signing.issuerKind == .cluster ? .signetClusterIssuers : .signetIssuers
        let issuer: KubernetesObject?
        do {
            issuer = try await client.get(
                kind, namespace: kind.namespaced ? key.namespace : nil, name: signing.issuerName)
        } catch {
            return await pending(
                key, request, "cannot read \(signing.issuerKind.rawValue) \(signing.issuerName): \(error)")
        }
        guard let issuer else {
            return await pending(
                key, request,
                "\(signing.issuerKind.rawValue) \(signing.issuerName) not found"
                    + (kind.namespaced ? " in namespace \(key.namespace)" : ""))
        }
        if !kind.namespaced {
            let spec = try? IssuerSpec(issuer)
            guard spec?.serves(namespace: key.namespace) == true else {
                await finish(
                    key, request, reason: "Failed",
                    message:
                        "SignetClusterIssuer \(signing.issuerName) does not serve namespace \(key.namespace) (spec.namespaces)"
                )
                return nil
            }
        }
        guard Conditions.get(issuer.json["status"] ?? .object([:]), "Ready")?["status"]?.string == "True" else {
            let why =
                Conditions.get(issuer.json["status"] ?? .object([:]), "Ready")?["message"]?.string ?? "not checked yet"
            return await pending(
                key, request, "\(signing.issuerKind.rawValue) \(signing.issuerName) is not ready: \(why)")
        }
        do {
            let chainPEM = try await signet.issueOnce(
                csrPEM: signing.csrPEM, profile: signing.profile, durationSeconds: signing.durationSeconds,
                namespace: key.namespace,
                requestedAt: Self.created(request)
            )
            guard let root = try await signet.caChain().last else {
                throw SignetClient.Failure(status: nil, description: "Signet's CA chain is empty")
            }
            let rootPEM = try PEMFiles.pem([root])
            try await client.updateStatus(.certificateRequests, namespace: key.namespace, name: key.name) { status, _ in
                status["certificate"] = .string(Data(chainPEM.utf8).base64EncodedString())
                status["ca"] = .string(Data(rootPEM.utf8).base64EncodedString())
                Conditions.set(
                    &status, type: "Ready", status: "True", reason: "Issued",
                    message: "Certificate fetched from issuer successfully", generation: nil, now: self.now())
            }
            backoff.forget(Self.uid(request))
            metrics.recordIssuance(succeeded: true)
            logger.info(
                "CertificateRequest signed",
                metadata: ["request": "\(key)", "issuer": "\(signing.issuerKind.rawValue)/\(signing.issuerName)"])
            return nil
        } catch let failure as SignetClient.Failure where Self.isRefusal(failure) {
            metrics.recordIssuance(succeeded: false)
            await finish(key, request, reason: "Failed", message: failure.description)
            return nil
        } catch {
            metrics.recordIssuance(succeeded: false)
            return await pending(key, request, "\(error)")
        }
    }

    /// Signet said no (bad request, policy, not allowed): cert-manager gives up on the request, as it should. Its own
    /// troubles (unreachable, 5xx, rate limits, authentication it could not check) are retried.
    static func isRefusal(_ failure: SignetClient.Failure) -> Bool {
        guard let status = failure.status else { return false }
        return (400..<500).contains(status) && ![401, 408, 429].contains(status)
    }

    /// `Ready=False` reason `Pending`, and when to try again (5 s, doubling, at most five minutes).
    private func pending(_ key: Key, _ request: KubernetesObject, _ message: String) async -> Duration {
        let (attempts, delay) = backoff.failed(Self.uid(request))
        do {
            try await client.updateStatus(.certificateRequests, namespace: key.namespace, name: key.name) { status, _ in
                Conditions.set(
                    &status, type: "Ready", status: "False", reason: "Pending", message: message, generation: nil,
                    now: self.now())
            }
        } catch {
            logger.warning(
                "cannot update a CertificateRequest's status", metadata: ["request": "\(key)", "error": "\(error)"])
        }
        logger.warning(
            "CertificateRequest pending",
            metadata: ["request": "\(key)", "attempts": "\(attempts)", "why": "\(message)"])
        return delay
    }

    /// `Ready=False` with a final reason (`Failed`, `Denied`) and `failureTime`: cert-manager does not retry it.
    private func finish(_ key: Key, _ request: KubernetesObject, reason: String, message: String) async {
        do {
            try await client.updateStatus(.certificateRequests, namespace: key.namespace, name: key.name) { status, _ in
                let at = self.now()
                Conditions.set(
                    &status, type: "Ready", status: "False", reason: reason, message: message, generation: nil, now: at)
                status["failureTime"] = .string(Conditions.timestamp(at))
            }
            backoff.forget(Self.uid(request))
            try? await client.recordEvent(
                regarding: request, type: "Warning", reason: reason, action: "Sign", note: message,
                controller: "signet.dev/controller")
        } catch {
            logger.warning(
                "cannot update a CertificateRequest's status", metadata: ["request": "\(key)", "error": "\(error)"])
        }
    }

    static func created(_ object: KubernetesObject) -> Date? {
        object.json["metadata"]?["creationTimestamp"]?.string.flatMap { ISO8601DateFormatter().date(from: $0) }
    }

    static func uid(_ object: KubernetesObject) -> String {
        object.json["metadata"]?["uid"]?.string ?? "\(object.namespace ?? "")/\(object.name)"
    }
}
