import Foundation
import Logging
import SignetDelivery
import SignetKubernetes
import SignetRenewal

/// A Certificate's renewal state in its cluster (cert-manager's key manager): the key of the issuance in progress,
/// kept in a Secret of its own (`NAME-next-key`, named in `status.nextPrivateKeySecretName`) until the certificate
/// for it is delivered, so the key never leaves the cluster and an interrupted issuance resumes with it.
struct PendingKeySecret: RenewalStateStore {
    static let annotation = "signet.dev/next-key-for"

    let client: KubernetesClient
    let certificate: CertificateController.Key
    let status: CertificateStatusWriter
    let logger: Logger

    var name: String { String(certificate.name.prefix(240)) + "-next-key" }

    /// The stored key; a Secret of that name that is not this Certificate's is never touched.
    func pendingKey() async throws -> String? {
        guard let existing = try await client.getSecret(namespace: certificate.namespace, name: name) else {
            return nil
        }
        guard existing.annotations[Self.annotation] == certificate.name else {
            throw ControllerError(
                "Secret \(certificate.namespace)/\(name) exists and is not this Certificate's pending key")
        }
        // A Secret without a readable key is still there, to be replaced.
        return existing.data["tls.key"].flatMap { String(bytes: $0, encoding: .utf8) } ?? ""
    }

    /// Conflicts (an injected or real 409, a Secret created or deleted in between) are read again, five times.
    func storePendingKey(_ pem: String, replacing: Bool) async throws -> String {
        var secret = KubernetesObject(
            .object([
                "apiVersion": .string("v1"), "kind": .string("Secret"), "type": .string("Opaque"),
                "metadata": .object(["name": .string(name), "namespace": .string(certificate.namespace)]),
            ]))
        secret.labels = [TLSSecret.managedByLabel: TLSSecret.managedByValue]
        secret.annotations = [Self.annotation: certificate.name]
        secret.data = ["tls.key": Array(pem.utf8)]
        var mustDelete = replacing
        var conflict: (any Error)?
        for _ in 0..<5 {
            do {
                if mustDelete {
                    do {
                        try await client.delete(.secrets, namespace: certificate.namespace, name: name)
                    } catch let error as KubernetesError where error.code == 404 {}
                    mustDelete = false
                }
                _ = try await client.createSecret(secret)
                let name = self.name
                await status.update(certificate) { status, _, _ in status.nextPrivateKeySecretName = name }
                return pem
            } catch let error as KubernetesError where error.code == 409 || error.code == 404 {
                // Another attempt may have stored one first: that one is the pending key.
                if !mustDelete, let theirs = try await pendingKey(), !theirs.isEmpty { return theirs }
                conflict = error
            }
        }
        throw conflict ?? ControllerError("the pending key could not be stored")
    }

    /// The delivered key's pending copy goes; a failure here is only logged (the next issuance notices a leftover).
    func complete(_ renewal: CompletedRenewal) async throws {
        guard renewal.usedPendingKey else { return }
        for attempt in 1...5 {
            do {
                try await client.delete(.secrets, namespace: certificate.namespace, name: name)
                return
            } catch let error as KubernetesError where error.code == 404 {
                return
            } catch {
                if attempt == 5 {
                    logger.warning(
                        "cannot remove a pending key",
                        metadata: ["secret": "\(certificate.namespace)/\(name)", "error": "\(error)"])
                }
                try? await Task.sleep(for: .milliseconds(200 * attempt))
            }
        }
    }
}

/// A failure of the controller's own making (not Signet's, not the API server's).
struct ControllerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
