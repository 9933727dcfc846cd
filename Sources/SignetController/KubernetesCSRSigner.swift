import Foundation
import Logging
import SignetAuthority
import SignetClient
import SignetKubernetes
import SignetOpenAPI

/// Kubernetes' own certificate API (`certificates.k8s.io/v1` CertificateSigningRequests), as pure decisions. A CSR is
/// Signet's when its `signerName` is one the controller was configured with; it is signed only once approved.
public enum KubernetesCSRRules {
    public struct SigningRequest: Sendable, Equatable {
        public var csrPEM: String
        public var profile: CertificateProfile
        /// `spec.expirationSeconds`, when asked for (the policy's maximum still applies).
        public var expirationSeconds: Int64?
        /// The namespace whose policy Signet applies: the one the signer name was configured to.
        public var namespace: String
    }

    public enum Decision: Sendable, Equatable {
        case notOurs
        /// Signed, failed or denied already.
        case finished
        case awaitingApproval
        /// Malformed or asking for what Signet never issues: a `Failed` condition, Signet not asked.
        case invalid(String)
        case sign(SigningRequest)
    }

    /// `signers` maps each signer name Signet serves to the namespace whose policy it signs under.
    public static func decide(_ csr: KubernetesObject, signers: [String: String]) -> Decision {
        let spec = csr.json["spec"], status = csr.json["status"] ?? .object([:])
        guard let signer = spec?["signerName"]?.string, let namespace = signers[signer] else { return .notOurs }
        if let certificate = status["certificate"]?.string, !certificate.isEmpty { return .finished }
        if Conditions.get(status, "Failed")?["status"]?.string == "True"
            || Conditions.get(status, "Denied")?["status"]?.string == "True"
        {
            return .finished
        }
        guard Conditions.get(status, "Approved")?["status"]?.string == "True" else { return .awaitingApproval }
        guard let encoded = spec?["request"]?.string, let der = Data(base64Encoded: encoded),
            let pem = String(data: der, encoding: .utf8), pem.contains("-----BEGIN CERTIFICATE REQUEST-----")
        else {
            return .invalid("spec.request is not a base64-encoded PEM certificate signing request")
        }
        let profile: CertificateProfile
        switch CertificateRequestRules.profile(usages: CertificateRequestRules.strings(spec?["usages"])) {
        case .success(let chosen): profile = chosen
        case .failure(let refusal): return .invalid(refusal.description)
        }
        var expiration: Int64?
        if let seconds = spec?["expirationSeconds"]?.number {
            // The API server itself refuses less than ten minutes.
            guard seconds >= 600 else { return .invalid("spec.expirationSeconds must be at least 600") }
            expiration = Int64(seconds)
        }
        return .sign(SigningRequest(csrPEM: pem, profile: profile, expirationSeconds: expiration, namespace: namespace))
    }

    /// `--csr-signer NAME=NAMESPACE` (repeatable): which signer names Signet serves, and under whose policy.
    public static func signers(parsing values: [String]) throws(CertificateSpecError) -> [String: String] {
        var signers: [String: String] = [:]
        for value in values {
            let parts = value.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[0].contains("/"), KubernetesNames.isSubdomain(parts[1]) else {
                throw .invalid(
                    "--csr-signer '\(value)' must be SIGNER-NAME=NAMESPACE, e.g. signet.dev/istio=istio-system")
            }
            guard signers[parts[0]] == nil else { throw .invalid("--csr-signer names \(parts[0]) twice") }
            signers[parts[0]] = parts[1]
        }
        return signers
    }
}

/// Signs `certificates.k8s.io/v1` CertificateSigningRequests for the signer names it is configured with, once they are
/// approved: what Istio's external-CA mode (`ISTIOD_RA_KUBERNETES_API`) and other in-cluster clients use. Each signer
/// name signs under one namespace's policy in Signet; the ledger records the controller acting for that namespace.
public final class KubernetesCSRSigner: Sendable {
    let client: KubernetesClient
    let signet: SignetClient
    let signers: [String: String]
    let settings: ControllerSettings
    let metrics: ControllerMetrics
    let logger: Logger
    let queue = WorkQueue<String>()
    let backoff = FailureBackoff()

    public init(
        client: KubernetesClient, signet: SignetClient, signers: [String: String], settings: ControllerSettings,
        metrics: ControllerMetrics,
        logger: Logger
    ) {
        self.client = client
        self.signet = signet
        self.signers = signers
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
    }

    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await self.client.follow(.certificateSigningRequests, namespace: nil) { observed in
                    for object in CertManagerIssuer.objects(observed)
                    where object.json["spec"]?["signerName"]?.string.map({ self.signers[$0] != nil }) == true {
                        await self.queue.add(object.name)
                    }
                }
            }
            group.addTask {
                await self.queue.process(workers: self.settings.concurrency, metrics: self.metrics) { name in
                    await self.reconcile(name).map { WorkQueue<String>.Outcome(after: $0, failed: true) }
                }
            }
        }
    }

    func reconcile(_ name: String) async -> Duration? {
        let csr: KubernetesObject
        do {
            guard let found = try await client.get(.certificateSigningRequests, namespace: nil, name: name) else {
                return nil
            }
            csr = found
        } catch {
            logger.warning(
                "cannot read a CertificateSigningRequest", metadata: ["csr": "\(name)", "error": "\(error)"])
            return .seconds(5)
        }
        switch KubernetesCSRRules.decide(csr, signers: signers) {
        case .notOurs, .finished, .awaitingApproval:
            return nil
        case .invalid(let message):
            await fail(csr, message)
            return nil
        case .sign(let signing):
            do {
                // Within policy: a longer expirationSeconds is shortened to the namespace's maximum, as the CSR API allows.
                var seconds = signing.expirationSeconds
                if let asked = seconds,
                    let maximum = try? Lifetime.parse(
                        try await signet.identity(namespace: signing.namespace).maxDuration)
                {
                    seconds = min(asked, maximum.components.seconds)
                }
                let chain = try await signet.issueOnce(
                    csrPEM: signing.csrPEM, profile: signing.profile, durationSeconds: seconds,
                    namespace: signing.namespace, requestedAt: CertManagerIssuer.created(csr))
                try await client.updateStatus(.certificateSigningRequests, namespace: nil, name: name) { status, _ in
                    status["certificate"] = .string(Data(chain.utf8).base64EncodedString())
                }
                backoff.forget(name)
                metrics.recordIssuance(succeeded: true)
                logger.info(
                    "CertificateSigningRequest signed",
                    metadata: ["csr": "\(name)", "signer": "\(csr.json["spec"]?["signerName"]?.string ?? "")"])
                return nil
            } catch let failure as SignetClient.Failure where CertManagerIssuer.isRefusal(failure) {
                metrics.recordIssuance(succeeded: false)
                await fail(csr, failure.description)
                return nil
            } catch {
                metrics.recordIssuance(succeeded: false)
                let (attempts, delay) = backoff.failed(name)
                logger.warning(
                    "CertificateSigningRequest not signed yet",
                    metadata: ["csr": "\(name)", "attempts": "\(attempts)", "error": "\(error)"])
                return delay
            }
        }
    }

    /// The `Failed` condition: the CSR API's way of saying the signer will not sign it.
    private func fail(_ csr: KubernetesObject, _ message: String) async {
        do {
            try await client.updateStatus(.certificateSigningRequests, namespace: nil, name: csr.name) { status, _ in
                Conditions.set(
                    &status, type: "Failed", status: "True", reason: "SignetRefused", message: message, generation: nil,
                    now: Date(), updateTime: true)
            }
            backoff.forget(csr.name)
            logger.warning("CertificateSigningRequest refused", metadata: ["csr": "\(csr.name)", "why": "\(message)"])
        } catch {
            logger.warning(
                "cannot update a CertificateSigningRequest's status",
                metadata: ["csr": "\(csr.name)", "error": "\(error)"])
        }
    }
}
