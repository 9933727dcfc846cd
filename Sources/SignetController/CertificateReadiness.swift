import Foundation
import Logging
import SignetKubernetes

/// Owns a Certificate's `Ready` condition while nothing is being issued: up to date with the certificate its Secret
/// holds, blocked by a Secret it may not write, or refused for an invalid spec (cert-manager's readiness controller).
struct CertificateReadiness: Sendable {
    let status: CertificateStatusWriter
    let metrics: ControllerMetrics
    let logger: Logger

    /// Keeps the status in step with the certificate held (after a restart, or a status edited by hand).
    func upToDate(_ key: CertificateController.Key, spec: CertificateSpec, held: HeldCertificate) async {
        await status.update(key) { status, generation, now in
            status.set(
                "Ready", true, reason: "Ready", message: "Certificate is up to date and has not expired",
                generation: generation, now: now)
            if status.condition("Issuing").map({ $0.status == "True" }) ?? true {
                status.set(
                    "Issuing", false, reason: "UpToDate", message: "No issuance needed", generation: generation,
                    now: now)
            }
            status.hold(held)
        }
        metrics.observe(key.namespace, key.name, secret: spec.secretName, held: held, ready: true)
    }

    /// Not Ready, with the reason, and a Warning Event when the reason is new; nothing is issued.
    func blocked(
        _ key: CertificateController.Key, object: KubernetesObject, spec: CertificateSpec, reason: String,
        message: String
    ) async {
        let known = CertificateStatus(object.json["status"]).condition("Ready")?.reason == reason
        await status.update(key) { status, generation, now in
            status.set("Ready", false, reason: reason, message: message, generation: generation, now: now)
            status.set("Issuing", false, reason: reason, message: message, generation: generation, now: now)
        }
        if !known { await status.announce(object, type: "Warning", reason: reason, note: message) }
        logger.warning(
            "not writing a Secret", metadata: ["certificate": "\(key)", "reason": "\(reason)", "message": "\(message)"])
        metrics.observe(key.namespace, key.name, secret: spec.secretName, held: nil, ready: false)
    }

    func invalid(_ key: CertificateController.Key, object: KubernetesObject, error: CertificateSpecError) async {
        await status.update(key) { status, generation, now in
            status.set(
                "Ready", false, reason: "InvalidSpec", message: error.description, generation: generation, now: now)
        }
        await status.announce(object, type: "Warning", reason: "InvalidSpec", note: error.description)
        metrics.observe(key.namespace, key.name, secret: nil, held: nil, ready: false)
    }
}
