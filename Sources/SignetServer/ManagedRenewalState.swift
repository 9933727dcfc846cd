import Foundation
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetManaged
import SignetRenewal
import SwiftASN1
import X509

/// A managed certificate's renewal state, in the ledger: the pending key (sealed, tied to the spec generation it was
/// made for) and, at the end, the delivery with its audit event.
struct ManagedRenewalState: RenewalStateStore {
    let ledger: any ManagedCertificateStore & AuditLog
    let record: ManagedCertificateRecord
    let startedAt: Date

    /// A pending key of an older spec generation belongs to a certificate nobody wants any more.
    func pendingKey() async throws -> String? {
        guard let kept = record.pendingKey, kept.generation == record.generation else { return nil }
        return kept.pem
    }

    /// The ledger keeps one pending key per managed certificate, so storing one replaces any other.
    func storePendingKey(_ pem: String, replacing: Bool) async throws -> String {
        let key = try PrivateKeyPEM.read(pem)
        try await ledger.beginRenewal(
            name: record.name,
            key: .init(pem: pem, publicKeySHA256: key.publicKey.sha256Fingerprint, generation: record.generation),
            at: startedAt)
        return pem
    }

    func complete(_ renewal: CompletedRenewal) async throws {
        let spec = record.spec
        try await ledger.completeRenewal(
            name: record.name, delivered: delivered(renewal),
            event: AuditEvent(
                at: renewal.deliveredAt, actor: ManagedCertificateRecord.requester(for: record.name),
                action: "certificate.deliver", outcome: .success, subject: renewal.serial,
                names: spec.dnsNames + spec.ipAddresses,
                reason: "Secret \(spec.target) (resourceVersion \(renewal.secretResourceVersion ?? "?"))"
            ))
    }

    func delivered(_ renewal: CompletedRenewal) -> ManagedCertificateRecord.Delivered {
        .init(
            serial: renewal.serial, notBefore: renewal.notBefore, notAfter: renewal.notAfter,
            renewalTime: renewal.renewalTime, generation: record.generation, deliveredAt: renewal.deliveredAt,
            secretResourceVersion: renewal.secretResourceVersion)
    }
}

/// Certificates for a managed certificate, straight from the issuance service under the certificate's own renewal
/// policy, and found again in the ledger by requester and key.
struct IssuanceServiceSource: CertificateSource {
    let issuance: IssuanceService
    let ledger: any IssuedCertificateStore
    let record: ManagedCertificateRecord
    let startedAt: Date
    let now: @Sendable () -> Date

    var requester: String { ManagedCertificateRecord.requester(for: record.name) }

    func issued(publicKeySHA256: String) async throws -> CertificateForKey? {
        guard let entry = try await ledger.certificate(requester: requester, publicKeySHA256: publicKeySHA256) else {
            return nil
        }
        return CertificateForKey(
            serial: entry.serial, names: Set(entry.dnsNames + entry.ipAddresses + entry.uris),
            revoked: entry.status(at: now()) == .revoked,
            chain: [try Certificate(derEncoded: entry.der)] + issuance.ca.chainAboveLeaf)
    }

    func issue(csrPEM: String) async throws -> [Certificate] {
        let spec = record.spec
        let request = IssuanceRequest(
            csrPEM: csrPEM, dnsNames: spec.dnsNames, ipAddresses: spec.ipAddresses,
            duration: "\(spec.durationSeconds)s", profile: spec.profile)
        // The signer's queue serves the certificate closest to expiry first.
        let remaining = record.delivered.map { $0.notAfter.timeIntervalSince(startedAt) } ?? 0
        let issued = try await SignAdmission.$urgency.withValue(max(0, remaining)) {
            try await issuance.issue(request, for: Caller(identity: requester, policy: spec.renewalPolicy))
        }
        return [try Certificate(derEncoded: issued.entry.der)] + issuance.ca.chainAboveLeaf
    }
}
