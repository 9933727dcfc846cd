import SwiftASN1
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Builds and signs the end-entity certificate for a plan. The only place a leaf's contents are decided.
public enum LeafCertificateFactory {
    /// Clocks disagree; a certificate valid from a minute ago is not rejected by a client whose clock lags.
    public static let backdating: TimeInterval = 60

    public struct Validity: Sendable, Equatable {
        public let notBefore: Date
        public let notAfter: Date

        /// Two thirds into the lifetime: when a client should renew (cert-manager's default).
        public var renewAfter: Date {
            notBefore.addingTimeInterval(notAfter.timeIntervalSince(notBefore) * 2 / 3)
        }
    }

    public static func validity(for lifetime: Duration, now: Date) -> Validity {
        // Whole seconds: X.509 times carry no fractions, and the ledger should match the certificate exactly.
        let start = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        return Validity(
            notBefore: start.addingTimeInterval(-backdating),
            notAfter: start.addingTimeInterval(TimeInterval(lifetime.components.seconds))
        )
    }

    public static func issue(
        _ plan: IssuancePlan,
        by ca: IssuingCA,
        serial: Certificate.SerialNumber,
        validity: Validity
    ) async throws -> Certificate {
        var alternativeNames: [GeneralName] = plan.names.dnsNames.map { .dnsName($0) }
        alternativeNames += plan.names.ipAddresses.map { .ipAddress(ASN1OctetString(contentBytes: $0.bytes[...])) }
        alternativeNames += plan.names.uris.map { .uniformResourceIdentifier($0) }
        let sans = SubjectAlternativeNames(alternativeNames)
        // With an empty subject the subjectAltName is the only identity and must be critical (RFC 5280 4.2.1.6).
        let subjectIsEmpty = plan.subject.isEmpty

        var extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: plan.request.key.isRSA))
            try plan.profile.extendedKeyUsage()
            SubjectKeyIdentifier(hash: plan.request.publicKey)
            AuthorityKeyIdentifier(keyIdentifier: ca.keyIdentifier[...])
            if subjectIsEmpty {
                Critical(sans)
            } else {
                sans
            }
        }
        if let url = ca.crlDistributionPoint {
            try extensions.append(
                Certificate.Extension(oid: [2, 5, 29, 31], critical: false, value: try crlDistributionPoints(url)[...]))
        }
        if let url = ca.ocspResponderURL {
            try extensions.append(
                Certificate.Extension(
                    AuthorityInformationAccess([
                        AuthorityInformationAccess.AccessDescription(
                            method: .ocspServer, location: .uniformResourceIdentifier(url)
                        )
                    ]), critical: false))
        }
        return try await Certificate(
            version: .v3,
            serialNumber: serial,
            publicKey: plan.request.publicKey,
            notValidBefore: validity.notBefore,
            notValidAfter: validity.notAfter,
            issuer: ca.certificate.subject,
            subject: plan.subject,
            signatureAlgorithm: ca.signatureAlgorithm,
            extensions: extensions,
            issuerAsyncPrivateKey: ca.key
        )
    }

    /// A delegated OCSP responder certificate (RFC 6960 §4.2.2.2, CA/B BR §7.1.2.8) for `publicKey`, issued directly
    /// by the CA: OCSPSigning alone, digitalSignature, not a CA, id-pkix-ocsp-nocheck (so clients do not ask about the
    /// responder itself, which is why it lives only days), and no CRL distribution point or names.
    public static func ocspResponder(
        publicKey: Certificate.PublicKey, by ca: IssuingCA, serial: Certificate.SerialNumber, validity: Validity,
        name: String
    ) async throws -> Certificate {
        var extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try CertificateProfile.ocspSigning.extendedKeyUsage()
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: ca.keyIdentifier[...])
        }
        try extensions.append(
            Certificate.Extension(oid: [1, 3, 6, 1, 5, 5, 7, 48, 1, 5], critical: false, value: [0x05, 0x00]))  // NULL
        return try await Certificate(
            version: .v3,
            serialNumber: serial,
            publicKey: publicKey,
            notValidBefore: validity.notBefore,
            notValidAfter: validity.notAfter,
            issuer: ca.certificate.subject,
            subject: try DistinguishedName { CommonName(name) },
            signatureAlgorithm: ca.signatureAlgorithm,
            extensions: extensions,
            issuerAsyncPrivateKey: ca.key
        )
    }

    /// cRLDistributionPoints with one distribution point, a full name that is one http URI (RFC 5280 §4.2.1.13, the
    /// CA/B profile): swift-certificates has no type for it. DistributionPoint's [0] and fullName's [0] are constructed,
    /// the URI a GeneralName [6].
    static func crlDistributionPoints(_ url: String) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { points in
            try points.appendConstructedNode(identifier: .sequence) { point in
                try point.appendConstructedNode(
                    identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)
                ) { name in
                    try name.appendConstructedNode(
                        identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)
                    ) { fullName in
                        fullName.appendPrimitiveNode(
                            identifier: ASN1Identifier(tagWithNumber: 6, tagClass: .contextSpecific)
                        ) { $0.append(contentsOf: Array(url.utf8)) }
                    }
                }
            }
        }
        return serializer.serializedBytes
    }
}
