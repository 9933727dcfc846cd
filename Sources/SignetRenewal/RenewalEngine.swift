import Foundation
import Logging
import SignetAuthority
import SignetDelivery
import SignetKeys
import SignetKubernetes
import X509

/// The one renewal, whoever keeps its state: (1) the key, stored as pending before anything is signed for it;
/// (2) the certificate for that key, the one an interrupted attempt already got if it is still good, else a new one;
/// (3) the Secret, written owner-checked and conflict-safe; (4) the outcome, recorded by the state store. Each step is
/// durable before the next starts, so an attempt interrupted anywhere resumes where it stopped and never signs twice.
public struct RenewalEngine: Sendable {
    let delivery: SecretDelivery
    let logger: Logger
    let now: @Sendable () -> Date

    public init(client: KubernetesClient, logger: Logger, now: @escaping @Sendable () -> Date = Date.init) {
        self.delivery = SecretDelivery(client: client, logger: logger)
        self.logger = logger
        self.now = now
    }

    public func renew(_ job: RenewalJob, state: some RenewalStateStore, source: some CertificateSource) async throws
        -> CompletedRenewal
    {
        // (1) The key.
        var key = try await self.key(for: job, state: state)
        // (2) The certificate.
        var earlier = try await source.issued(publicKeySHA256: key.fingerprint)
        if key.pending, let found = earlier, found.serial == job.deliveredSerial {
            // A pending key whose certificate the Secret already holds is left over from a finished renewal whose
            // last step failed: a new key, rather than the same certificate handed out once more.
            logger.info(
                "discarding a pending key left over from an earlier renewal",
                metadata: ["secret": "\(job.namespace)/\(job.secretName)"])
            key = try await freshKey(for: job, state: state, replacing: true)
            earlier = nil
        }
        let chain: [Certificate]
        let resumed: Bool
        if let found = earlier, resumable(found, for: job) {
            logger.info(
                "resuming an interrupted renewal with the certificate already issued for its key",
                metadata: ["secret": "\(job.namespace)/\(job.secretName)", "serial": "\(found.serial)"])
            chain = found.chain
            resumed = true
        } else {
            // Nothing is signed for a Secret this renewal may not write (another owner keeps it, or it is not
            // Signet's and not to be adopted): the write would be refused, and every retry would sign again.
            if let existing = try await delivery.client.getSecret(namespace: job.namespace, name: job.secretName),
                let refusal = TLSSecret.refusal(toWrite: existing, owner: job.owner, adopt: job.adopt)
            {
                throw refusal
            }
            chain = try await source.issue(csrPEM: try job.keyAlgorithm.signingRequest(for: key.privateKey))
            resumed = false
        }
        guard let leaf = chain.first else { throw RenewalError.emptyChain }

        // (3) The Secret.
        let renewalTime = job.renewalTime(leaf)
        let written = try await deliver(chain: chain, keyPEM: key.pem, renewAfter: renewalTime, job: job)

        // (4) The record.
        let completed = CompletedRenewal(
            serial: SerialNumbers.hex(leaf.serialNumber), notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter,
            renewalTime: renewalTime, secretResourceVersion: written.resourceVersion, resumed: resumed,
            usedPendingKey: key.pending, deliveredAt: now()
        )
        try await state.complete(completed)
        return completed
    }

    /// Writes the Istio-shaped Secret for `chain` and its key with the job's template: used by `renew`, and to rewrite
    /// a Secret's metadata or `ca.crl` around the certificate it already holds.
    @discardableResult
    public func deliver(chain: [Certificate], keyPEM: String, renewAfter: Date, job: RenewalJob) async throws
        -> KubernetesObject
    {
        guard let leaf = chain.first else { throw RenewalError.emptyChain }
        var contents = TLSSecretContents(
            chain: chain, privateKeyPEM: keyPEM, root: job.root, issuer: "\(leaf.issuer)", renewAfter: renewAfter)
        contents.templateLabels = job.template.labels
        contents.templateAnnotations = job.template.annotations
        contents.owner = job.owner
        try contents.addOutputs(job.template.outputFormats, pkcs12Password: job.template.pkcs12Password)
        if let crl = job.template.caCRL { contents.outputs[TLSSecret.crlKey] = crl }
        return try await delivery.deliver(contents, namespace: job.namespace, name: job.secretName, adopt: job.adopt)
    }

    /// An earlier certificate for the key is handed out only if it is for exactly the job's names, unrevoked, not
    /// the one the Secret already holds, and not already due for renewal.
    func resumable(_ earlier: CertificateForKey, for job: RenewalJob) -> Bool {
        guard let leaf = earlier.chain.first, earlier.names == job.names, !earlier.revoked,
            earlier.serial != job.deliveredSerial
        else { return false }
        let at = now()
        return at < leaf.notValidAfter && at < job.renewalTime(leaf)
    }

    struct Key {
        let pem: String
        let privateKey: Certificate.PrivateKey
        let fingerprint: String
        /// Stored by the state store, as opposed to kept from the Secret.
        let pending: Bool

        init?(_ pem: String, algorithm: KeyAlgorithm, pending: Bool) {
            guard let parsed = try? PrivateKeyPEM.read(pem), KeyAlgorithm.of(parsed.publicKey) == algorithm else {
                return nil
            }
            self.pem = pem
            self.privateKey = parsed
            self.fingerprint = parsed.publicKey.sha256Fingerprint
            self.pending = pending
        }
    }

    /// The key to keep, else the pending key an interrupted attempt stored (if of the right algorithm), else a new
    /// one, stored before anything is signed for it.
    func key(for job: RenewalJob, state: some RenewalStateStore) async throws -> Key {
        if let kept = job.keptKeyPEM.flatMap({ Key($0, algorithm: job.keyAlgorithm, pending: false) }) { return kept }
        let stored = try await state.pendingKey()
        if let pending = stored.flatMap({ Key($0, algorithm: job.keyAlgorithm, pending: true) }) { return pending }
        return try await freshKey(for: job, state: state, replacing: stored != nil)
    }

    func freshKey(for job: RenewalJob, state: some RenewalStateStore, replacing: Bool) async throws -> Key {
        let (_, pem) = try job.keyAlgorithm.generate()
        let stored = try await state.storePendingKey(pem, replacing: replacing)
        guard let key = Key(stored, algorithm: job.keyAlgorithm, pending: true) else {
            throw RenewalError.unusablePendingKey
        }
        return key
    }
}

public enum RenewalError: Error, CustomStringConvertible {
    case emptyChain
    case unusablePendingKey

    public var description: String {
        switch self {
        case .emptyChain: "the issuer's answer holds no certificate"
        case .unusablePendingKey: "the pending key stored for this renewal is not a key of the requested algorithm"
        }
    }
}
