import Foundation
import Logging
import SignetKubernetes

/// Writes a Certificate's status (typed, read-modify-write through the status subresource; a conflict re-reads and
/// re-applies) and its Events. A failure to write either is logged: the next reconciliation writes again.
struct CertificateStatusWriter: Sendable {
    let client: KubernetesClient
    let logger: Logger
    let now: @Sendable () -> Date

    func update(
        _ key: CertificateController.Key,
        _ change: @escaping @Sendable (_ status: inout CertificateStatus, _ generation: Int, _ now: Date) -> Void
    ) async {
        let at = now()
        do {
            try await client.updateStatus(.certificates, namespace: key.namespace, name: key.name) { json, generation in
                var status = CertificateStatus(json)
                change(&status, generation, at)
                status.write(into: &json)
            }
        } catch {
            logger.warning(
                "cannot update a Certificate's status", metadata: ["certificate": "\(key)", "error": "\(error)"])
        }
    }

    func announce(_ object: KubernetesObject, type: String, reason: String, note: String) async {
        do {
            try await client.recordEvent(
                regarding: object, type: type, reason: reason, action: "Issue", note: note,
                controller: "signet.dev/controller")
        } catch {
            logger.debug("could not record an Event", metadata: ["error": "\(error)"])
        }
    }
}
