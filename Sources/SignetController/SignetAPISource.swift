import Foundation
import SignetClient
import SignetKeys
import SignetOpenAPI
import SignetRenewal
import X509

/// Certificates for a Certificate resource, from Signet's API under its namespace's policy.
struct SignetAPISource: CertificateSource {
    let signet: SignetClient
    let spec: CertificateSpec
    let namespace: String

    func issued(publicKeySHA256: String) async throws -> CertificateForKey? {
        guard let (record, chainPEM) = try await signet.issued(publicKeySHA256: publicKeySHA256, namespace: namespace)
        else { return nil }
        return CertificateForKey(
            serial: record.serial, names: Set(record.dnsNames + record.ipAddresses + (record.uris ?? [])),
            revoked: record.status == .revoked,
            chain: try PEMFiles.certificates(in: chainPEM, source: "Signet's answer"))
    }

    func issue(csrPEM: String) async throws -> [Certificate] {
        let issued = try await signet.issue(
            csrPEM: csrPEM, dnsNames: spec.dnsNames, ipAddresses: spec.ipAddresses, duration: spec.duration,
            profile: spec.profile, namespace: namespace)
        return try PEMFiles.certificates(in: issued.chain, source: "Signet's answer")
    }
}
