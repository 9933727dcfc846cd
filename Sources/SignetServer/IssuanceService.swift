import Crypto
import Logging
import SignetAuthority
import SignetKeys
import SignetLedger
import SwiftASN1
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A certificate that has been signed and committed to the ledger: safe to hand out.
public struct IssuedCertificate: Sendable {
    public let entry: CertificateEntry
    public let leafPEM: String
    /// Leaf and intermediates: the `tls.crt` shape.
    public let chainPEM: String
    /// The root: the `ca.crt` shape.
    public let rootPEM: String
    public let renewAfter: Date
}

/// The issuance pipeline: policy and CSR rules, signing through the CA's signer, and the ledger, in that order.
/// A certificate leaves `issue` only after its ledger row is durable; a refusal leaves an audit event and nothing else.
public final class IssuanceService: Sendable {
    public let ca: IssuingCA
    private let ledger: any IssuedCertificateStore & AuditLog
    private let metrics: SignetMetrics
    private let logger: Logger
    private let now: @Sendable () -> Date
    /// The PEM of everything above the leaf, computed once: it is part of every answer.
    public let intermediatesPEM: String
    public let rootPEM: String
    /// Subjects (normalized DNs) that are client-certificate identities: never issued to anyone, so that no caller
    /// can mint a certificate that authenticates as an identity, whichever CA the identities trust.
    public let reservedSubjects: Set<String>
    /// Where the CA key is, for problems: "the CA key in Azure Key Vault".
    public let signerDescription: String
    /// Told of every revocation, by serial (the CRL publisher re-signs within seconds, the OCSP responder at once).
    private let onRevocation: @Sendable (String) -> Void
    /// Where serials come from: `SerialNumbers.random` (159 random bits), a test's sequence otherwise.
    private let serialNumbers: @Sendable () -> Certificate.SerialNumber

    public init(
        ca: IssuingCA, ledger: any IssuedCertificateStore & AuditLog, metrics: SignetMetrics, logger: Logger,
        reservedSubjects: Set<String> = [],
        signerDescription: String = "the CA key", onRevocation: @escaping @Sendable (String) -> Void = { _ in },
        now: @escaping @Sendable () -> Date = Date.init,
        serialNumbers: @escaping @Sendable () -> Certificate.SerialNumber = SerialNumbers.random
    ) throws {
        self.onRevocation = onRevocation
        self.serialNumbers = serialNumbers
        self.ca = ca
        self.signerDescription = signerDescription
        self.reservedSubjects = reservedSubjects
        self.ledger = ledger
        self.metrics = metrics
        self.logger = logger
        self.now = now
        self.intermediatesPEM = try PEMFiles.pem(ca.chainAboveLeaf)
        self.rootPEM = try PEMFiles.pem([ca.root])
    }

    /// `alongside` names a write a front end needs in the certificate's own transaction (an ACME order it completes),
    /// given the certificate's serial.
    public func issue(
        _ request: IssuanceRequest, for caller: Caller, alongside: (@Sendable (String) -> LedgerWrite)? = nil
    ) async throws -> IssuedCertificate {
        let started = ContinuousClock.now
        let issuedAt = now()
        let plan: IssuancePlan
        do throws(IssuanceRefusal) {
            plan = try IssuanceRules.plan(
                request, policy: caller.policy, now: issuedAt, issuerNotAfter: ca.certificate.notValidAfter)
            let subject = DistinguishedNames.normalized(plan.subject.description)
            guard !reservedSubjects.contains(subject) else { throw .policy(.identityReserved(subject)) }
        } catch {
            metrics.recordRefused()
            let names = (request.dnsNames ?? []) + (request.ipAddresses ?? [])
            try await ledger.record(
                AuditEvent(
                    at: issuedAt, actor: caller.identity, action: "certificate.issue", outcome: .refused, names: names,
                    reason: error.description))
            throw error
        }

        // A serial already recorded (160 random bits make it all but impossible; a second replica on one database
        // is where it would show) is refused by the ledger's unique key, and the certificate is signed again with a
        // new one: the caller never sees the collision, and no serial is ever recorded twice.
        var attempt = 1
        while true {
            do {
                let issued = try await signAndRecord(plan, for: caller, issuedAt: issuedAt, alongside: alongside)
                metrics.recordIssued(after: ContinuousClock.now - started)
                logger.info(
                    "certificate issued",
                    metadata: [
                        "serial": "\(issued.entry.serial)", "requester": "\(caller.identity)",
                        "names": .array(plan.names.all.map { .string($0) }),
                        "notAfter": "\(issued.entry.notAfter.timeIntervalSince1970)",
                    ])
                return issued
            } catch LedgerError.serialTaken(let serial) where attempt < 3 {
                logger.warning(
                    "a new certificate's serial was already recorded; signing again with another",
                    metadata: ["serial": "\(serial)", "attempt": "\(attempt)"])
                attempt += 1
            }
        }
    }

    /// Signs the planned certificate with a fresh serial and records it; returns it once the record is durable.
    private func signAndRecord(
        _ plan: IssuancePlan, for caller: Caller, issuedAt: Date, alongside: (@Sendable (String) -> LedgerWrite)?
    ) async throws -> IssuedCertificate {
        let serial = serialNumbers()
        let validity = LeafCertificateFactory.validity(for: plan.lifetime, now: issuedAt)
        let certificate: Certificate
        let receipt = SignatureReceipt()
        do {
            certificate = try await SignatureReceipt.$current.withValue(receipt) {
                try await LeafCertificateFactory.issue(plan, by: ca, serial: serial, validity: validity)
            }
        } catch let busy as AdmissionRefused {
            metrics.recordFailed()
            throw busy
        } catch {
            metrics.recordFailed()
            logger.error("signing failed", metadata: ["error": "\(error)", "requester": "\(caller.identity)"])
            try? await ledger.record(
                AuditEvent(
                    at: issuedAt, actor: caller.identity, action: "certificate.issue", outcome: .failed,
                    names: plan.names.all, reason: "signing failed: \(error)"))
            throw SigningFailure(signer: signerDescription, reason: String(describing: error))
        }

        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        let serialHex = SerialNumbers.hex(serial)
        var entry = CertificateEntry(
            serial: serialHex,
            issuerKeyID: ca.keyIdentifier.hexString,
            subject: plan.subject.description,
            dnsNames: plan.names.dnsNames,
            ipAddresses: plan.names.ipAddresses.map(\.description),
            publicKeySHA256: plan.request.publicKey.sha256Fingerprint,
            csrSHA256: plan.request.sha256.hexString,
            profile: plan.profile,
            notBefore: validity.notBefore,
            notAfter: validity.notAfter,
            requester: caller.identity,
            issuedAt: issuedAt,
            der: serializer.serializedBytes
        )
        entry.uris = plan.names.uris
        entry.signerKeyVersion = receipt.recorded.keyVersion
        entry.signerRequestID = receipt.recorded.requestID
        do {
            try await ledger.record(
                entry,
                event: AuditEvent(
                    at: issuedAt, actor: caller.identity, action: "certificate.issue", outcome: .success,
                    subject: serialHex, names: plan.names.all),
                alongside: alongside?(serialHex)
            )
        } catch LedgerError.serialTaken(let serial) {
            throw LedgerError.serialTaken(serial)  // signed again by `issue`, not a failure
        } catch {
            metrics.recordFailed()
            logger.error(
                "could not record an issued certificate; it is discarded",
                metadata: ["error": "\(error)", "serial": "\(serialHex)"])
            throw error
        }

        let leafPEM = leafPEM(of: entry)
        return IssuedCertificate(
            entry: entry, leafPEM: leafPEM, chainPEM: leafPEM + intermediatesPEM, rootPEM: rootPEM,
            renewAfter: validity.renewAfter
        )
    }

    /// Revokes a certificate on behalf of `actor`: the one path of the REST API, the CLI and ACME. Who may revoke
    /// what is the front end's decision; this records it.
    public func revoke(serial: String, reason: RevocationReason, by actor: String) async throws -> RevocationOutcome {
        let outcome = try await ledger.revoke(serial: serial, reason: reason, at: now(), actor: actor)
        if case .revoked(let entry) = outcome {
            onRevocation(entry.serial)
            logger.info(
                "certificate revoked",
                metadata: ["serial": "\(entry.serial)", "reason": "\(reason.name)", "by": "\(actor)"])
        }
        return outcome
    }

    public func certificate(serial: String) async throws -> CertificateEntry? {
        try await ledger.certificate(serial: serial)
    }

    /// A page of the ledger's certificates (the caller's scope is the handler's to set in `query`).
    public func certificates(matching query: CertificateQuery) async throws -> CertificatePage {
        try await ledger.certificates(matching: query)
    }

    public func leafPEM(of entry: CertificateEntry) -> String {
        PEM.encode(entry.der, type: "CERTIFICATE")
    }

    /// Leaf and intermediates of a recorded certificate, as PEM.
    public func chainPEM(of entry: CertificateEntry) -> String {
        leafPEM(of: entry) + intermediatesPEM
    }
}
