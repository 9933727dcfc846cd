import Foundation
import Logging
import SignetAuthority
import SignetClient
import SignetDelivery
import SignetKeys
import SignetKubernetes
import SignetRenewal
import X509

/// Owns a Certificate's `Issuing` condition (cert-manager's issuing and request-manager controllers): runs the one
/// renewal engine with the pending-key Secret as its state and Signet's API as its source, records the outcome in the
/// typed status, and backs off after failures.
struct CertificateIssuing: Sendable {
    let client: KubernetesClient
    let signet: SignetClient
    let status: CertificateStatusWriter
    let metrics: ControllerMetrics
    let logger: Logger
    let now: @Sendable () -> Date

    /// What asked for the issuance, in cert-manager's words, and whether the key must be new whatever the rotation
    /// policy says (a revoked certificate's key is never reused).
    struct Trigger: Sendable {
        var reason: String
        var message: String
        var newKey = false
    }

    /// The job for `spec` in `key`'s namespace: the Secret's template with the spec hash and the owning Certificate,
    /// and `ca.crl` when it carries one.
    func job(
        _ key: CertificateController.Key, spec: CertificateSpec, root: Certificate, crl: [UInt8]?, adopt: Bool,
        deliveredSerial: String?, keptKeyPEM: String? = nil
    ) -> RenewalJob {
        RenewalJob(
            names: RenewalJob.canonicalNames(dnsNames: spec.dnsNames, ipAddresses: spec.ipAddresses),
            keyAlgorithm: spec.keyAlgorithm, keptKeyPEM: keptKeyPEM, namespace: key.namespace,
            secretName: spec.secretName, owner: CertificateController.owner(key), adopt: adopt,
            deliveredSerial: deliveredSerial,
            template: SecretTemplate(
                labels: spec.labels,
                annotations: spec.annotations.merging([
                    Reconciler.specHashAnnotation: spec.issuanceHash,
                    CertificateController.certificateAnnotation: key.name,
                ]) { $1 },
                caCRL: crl),
            root: root, renewalTime: { Reconciler.renewalTime(of: $0, spec: spec) }
        )
    }

    func issue(
        _ key: CertificateController.Key, object: KubernetesObject, spec: CertificateSpec, secret: KubernetesObject?,
        roots: [Certificate], crl: [UInt8]?, trigger: Trigger, adopt: Bool
    ) async -> CertificateController.Requeue {
        logger.info("issuing", metadata: ["certificate": "\(key)", "reason": "\(trigger.reason)"])
        await status.update(key) { status, generation, now in
            status.set(
                "Issuing", true, reason: trigger.reason, message: trigger.message, generation: generation, now: now)
        }
        let current = CertificateStatus(object.json["status"])
        do {
            guard let root = roots.last else { throw ControllerError("Signet's CA chain is empty") }
            let kept =
                spec.rotationPolicy == .never && !trigger.newKey
                ? secret?.data["tls.key"].flatMap { String(bytes: $0, encoding: .utf8) } : nil
            let job = job(
                key, spec: spec, root: root, crl: crl, adopt: adopt, deliveredSerial: current.serial, keptKeyPEM: kept)
            let state = PendingKeySecret(client: client, certificate: key, status: status, logger: logger)
            let renewal = try await RenewalEngine(client: client, logger: logger, now: now).renew(
                job, state: state, source: SignetAPISource(signet: signet, spec: spec, namespace: key.namespace))
            let held = HeldCertificate(
                serial: renewal.serial, notBefore: renewal.notBefore, notAfter: renewal.notAfter,
                renewalTime: renewal.renewalTime)
            await status.update(key) { status, generation, now in
                status.set(
                    "Ready", true, reason: "Ready", message: "Certificate is up to date and has not expired",
                    generation: generation, now: now)
                status.set(
                    "Issuing", false, reason: "Issued", message: "Issued certificate \(held.serial)",
                    generation: generation, now: now)
                status.hold(held)
                status.revision = (status.revision ?? 0) + 1
                status.failedIssuanceAttempts = nil
                status.lastFailureTime = nil
                status.nextPrivateKeySecretName = nil
            }
            await status.announce(
                object, type: "Normal", reason: "Issued",
                note:
                    "Certificate \(held.serial) issued by Signet and stored in Secret \(spec.secretName) (\(trigger.reason))"
            )
            metrics.recordIssuance(succeeded: true)
            metrics.observe(key.namespace, key.name, secret: spec.secretName, held: held, ready: true)
            return CertificateController.Requeue(
                after: CertificateController.delay(until: held.renewalTime, now: now()))
        } catch {
            let failures = current.issuanceRecord.failedAttempts + 1
            let delay = RenewalSchedule.retryDelay(afterFailures: failures, jitter: 0.5)
            let stillValid = secret.flatMap { Reconciler.inspectedLeaf($0, roots: roots, now: now()) } != nil
            await status.update(key) { status, generation, now in
                status.set("Issuing", false, reason: "Failed", message: "\(error)", generation: generation, now: now)
                if !stillValid {
                    status.set("Ready", false, reason: "Failed", message: "\(error)", generation: generation, now: now)
                }
                status.failedIssuanceAttempts = failures
                status.lastFailureTime = now
            }
            await status.announce(
                object, type: "Warning", reason: "Failed",
                note: "Issuance failed (attempt \(failures), next in \(Int(delay.timeInterval)) s): \(error)")
            metrics.recordIssuance(succeeded: false)
            logger.warning(
                "issuance failed", metadata: ["certificate": "\(key)", "attempts": "\(failures)", "error": "\(error)"])
            return CertificateController.Requeue(after: delay, failed: true)
        }
    }

    /// Template labels or annotations, or the chain's CRLs, changed: the Secret is rewritten around the certificate and
    /// key it holds (nothing is issued).
    func rewrite(
        _ secret: KubernetesObject, key: CertificateController.Key, spec: CertificateSpec, held: HeldCertificate,
        roots: [Certificate], crl: [UInt8]?, adopt: Bool
    ) async throws {
        let data = secret.data
        guard let crt = data["tls.crt"].flatMap({ String(bytes: $0, encoding: .utf8) }),
            let keyPEM = data["tls.key"].flatMap({ String(bytes: $0, encoding: .utf8) }),
            let root = roots.last
        else { return }
        let chain = try PEMFiles.certificates(in: crt, source: "tls.crt")
        let job = job(key, spec: spec, root: root, crl: crl, adopt: adopt, deliveredSerial: held.serial)
        try await RenewalEngine(client: client, logger: logger, now: now).deliver(
            chain: chain, keyPEM: keyPEM, renewAfter: held.renewalTime, job: job)
    }
}
