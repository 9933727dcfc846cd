import Logging
import SignetKubernetes
import X509

/// Writes a TLS Secret into a cluster: read, compute, create or replace with the resourceVersion just read; on a
/// conflict (someone else wrote in between) read again and re-apply, a bounded number of times. Every write is
/// announced with an Event on the Secret.
public struct SecretDelivery: Sendable {
    public let client: KubernetesClient
    public var maximumAttempts = 5
    let logger: Logger

    public init(client: KubernetesClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// The Secret as stored after the write.
    @discardableResult
    public func deliver(_ contents: TLSSecretContents, namespace: String, name: String, adopt: Bool = false)
        async throws -> KubernetesObject
    {
        var lastConflict: KubernetesError?
        for _ in 0..<maximumAttempts {
            let existing = try await client.getSecret(namespace: namespace, name: name)
            let desired: KubernetesObject
            do {
                desired = try TLSSecret.desired(
                    existing: existing, namespace: namespace, name: name, contents: contents, adopt: adopt)
            } catch {
                if let existing {
                    await announce(existing, type: "Warning", reason: "SecretNotWritten", note: error.description)
                }
                throw error
            }
            do {
                let written =
                    existing == nil ? try await client.createSecret(desired) : try await client.replaceSecret(desired)
                let serial = written.annotations[TLSSecret.serialAnnotation] ?? "?"
                await announce(
                    written, type: "Normal", reason: existing == nil ? "CertificateIssued" : "CertificateRenewed",
                    note:
                        "Signet wrote certificate \(serial) for \(contents.chain[0].subject) (renew after \(written.annotations[TLSSecret.renewAfterAnnotation] ?? "?"))"
                )
                return written
            } catch let error as KubernetesError where error.code == 409 {
                // Conflict (stale resourceVersion) or AlreadyExists (created meanwhile): read again and re-apply.
                logger.debug(
                    "Secret write conflicted; re-reading",
                    metadata: ["secret": "\(namespace)/\(name)", "reason": "\(error.reason ?? "")"])
                lastConflict = error
            }
        }
        throw lastConflict ?? KubernetesError.invalidAnswer("no attempt made")
    }

    /// Replaces `ca.crl` of a Secret this owner wrote, keeping everything else; conflict-safe like `deliver`. Returns
    /// whether anything changed (false too when the Secret is gone or is not this owner's: nothing is written then).
    @discardableResult
    public func refreshCRL(_ pem: String, namespace: String, name: String, owner: String) async throws -> Bool {
        var lastConflict: KubernetesError?
        for _ in 0..<maximumAttempts {
            guard var existing = try await client.getSecret(namespace: namespace, name: name),
                TLSSecret.refusal(toWrite: existing, owner: owner, adopt: false) == nil,
                existing.annotations[TLSSecret.ownerAnnotation] == owner
            else { return false }
            var data = existing.data
            guard data[TLSSecret.crlKey] != Array(pem.utf8) else { return false }
            data[TLSSecret.crlKey] = Array(pem.utf8)
            existing.data = data
            do {
                _ = try await client.replaceSecret(existing)
                return true
            } catch let error as KubernetesError where error.code == 409 {
                lastConflict = error
            }
        }
        throw lastConflict ?? KubernetesError.invalidAnswer("no attempt made")
    }

    private func announce(_ object: KubernetesObject, type: String, reason: String, note: String) async {
        do {
            try await client.recordEvent(regarding: object, type: type, reason: reason, action: "Write", note: note)
        } catch {
            logger.warning(
                "could not record an Event",
                metadata: ["secret": "\(object.namespace ?? "")/\(object.name)", "error": "\(error)"])
        }
    }
}
