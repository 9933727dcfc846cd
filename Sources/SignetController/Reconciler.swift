import Crypto
import Foundation
import SignetAuthority
import SignetDelivery
import SignetKeys
import SignetKubernetes
import SignetRenewal
import SwiftASN1
import X509

/// What the controller has recorded about a Certificate's issuances (its status, as far as decisions need it).
public struct IssuanceRecord: Sendable, Equatable {
    public var failedAttempts = 0
    public var lastFailure: Date?

    public init(failedAttempts: Int = 0, lastFailure: Date? = nil) {
        self.failedAttempts = failedAttempts
        self.lastFailure = lastFailure
    }
}

/// The certificate a Secret holds, once checked.
public struct HeldCertificate: Sendable, Equatable {
    public var serial: String
    public var notBefore: Date
    public var notAfter: Date
    public var renewalTime: Date
}

/// The controller's decision for one Certificate: the pure core of reconciliation, from the spec, the Secret as
/// found, the issuance record and the clock. It re-issues exactly when the Secret is missing, broken (tampered, wrong
/// key, not from this CA), expired, due for renewal, or issued for another spec; never otherwise.
public enum Reconciler {
    public enum Decision: Sendable, Equatable {
        /// A new certificate is needed; `reason` is cert-manager's word for why.
        case issue(reason: String, message: String)
        /// The certificate is good, but the Secret lacks the template's labels or annotations, or its `ca.crl` is not
        /// the current one.
        case refreshMetadata(HeldCertificate)
        /// Nothing to do until the renewal time.
        case upToDate(HeldCertificate)
        /// A failed issuance is waiting out its backoff.
        case backingOff(until: Date)
        /// The Secret may not be written by this Certificate (another owner keeps it, Signet did not make it and it
        /// may not be adopted, or it has another type): nothing is issued, the status says why.
        case blocked(reason: String, message: String)
    }

    public static let specHashAnnotation = "signet.dev/spec-hash"

    /// `owner` is the Certificate's owner name for its Secret (`certificate/NAMESPACE/NAME`); `mayAdopt` whether it may
    /// take over a Secret Signet did not write (a Certificate a user made may, as in cert-manager; one the Gateway
    /// shim made may not); `caCRL` the `ca.crl` the Secret should hold (nil: none).
    public static func decide(
        spec: CertificateSpec, secret: KubernetesObject?, owner: String, mayAdopt: Bool, record: IssuanceRecord,
        trustedRoots: [Certificate],
        caCRL: [UInt8]? = nil, now: Date
    ) -> Decision {
        if let secret, let refusal = TLSSecret.refusal(toWrite: secret, owner: owner, adopt: mayAdopt) {
            switch refusal {
            case .ownedElsewhere: return .blocked(reason: "SecretOwnedElsewhere", message: refusal.description)
            case .notManaged: return .blocked(reason: "SecretNotManaged", message: refusal.description)
            case .wrongType, .brokenContents: return .blocked(reason: "SecretNotWritable", message: refusal.description)
            }
        }
        if record.failedAttempts > 0, let failure = record.lastFailure {
            let retryAt = failure.addingTimeInterval(
                RenewalSchedule.retryDelay(afterFailures: record.failedAttempts, jitter: 0.5).timeInterval)
            if now < retryAt { return .backingOff(until: retryAt) }
        }
        guard let secret else {
            return .issue(reason: "DoesNotExist", message: "Issuing certificate as Secret does not exist")
        }
        let held: (certificate: Certificate, chain: [Certificate])
        switch inspect(secret, trustedRoots: trustedRoots, now: now) {
        case .failure(let problem):
            return .issue(
                reason: "InvalidContents", message: "Issuing certificate as Secret contents are invalid: \(problem)")
        case .success(let found):
            held = found
        }
        guard secret.annotations[specHashAnnotation] == spec.issuanceHash else {
            return .issue(
                reason: "SpecChanged",
                message: "Issuing certificate as the Certificate's names, key, profile or duration changed")
        }
        let leaf = held.certificate
        guard names(of: leaf) == names(of: spec) else {
            return .issue(
                reason: "IncorrectCertificate",
                message: "Issuing certificate as the Secret's certificate is not for the Certificate's names")
        }
        guard now < leaf.notValidAfter else {
            return .issue(
                reason: "Expired", message: "Issuing certificate as the certificate expired at \(leaf.notValidAfter)")
        }
        let info = HeldCertificate(
            serial: SerialNumbers.hex(leaf.serialNumber), notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter,
            renewalTime: renewalTime(of: leaf, spec: spec)
        )
        if now >= info.renewalTime {
            return .issue(
                reason: "Renewing",
                message: "Renewing certificate as renewal was scheduled at \(info.renewalTime.formatted(.iso8601))")
        }
        let labels = secret.labels, annotations = secret.annotations
        // A Secret written before owners were recorded is stamped with its owner, so no other may claim it.
        if spec.labels.contains(where: { labels[$0.key] != $0.value })
            || spec.annotations.contains(where: { annotations[$0.key] != $0.value })
            || annotations[TLSSecret.ownerAnnotation] != owner || secret.data[TLSSecret.crlKey] != caCRL
        {
            return .refreshMetadata(info)
        }
        return .upToDate(info)
    }

    /// The names a certificate is for, canonical (lower-case hosts, parsed addresses).
    static func names(of leaf: Certificate) -> Set<String> {
        guard let alternatives = try? leaf.extensions.subjectAlternativeNames else { return [] }
        var names: Set<String> = []
        for name in alternatives {
            switch name {
            case .dnsName(let host): names.insert(host.lowercased())
            case .ipAddress(let octets):
                if let address = IPAddress(bytes: octets.bytes) { names.insert(address.description) }
            default: continue
            }
        }
        return names
    }

    /// Canonical as Signet makes them; names Signet would refuse match nothing (and Signet says why on issuance).
    static func names(of spec: CertificateSpec) -> Set<String> {
        RenewalJob.canonicalNames(dnsNames: spec.dnsNames, ipAddresses: spec.ipAddresses)
    }

    /// The renewal time for a held certificate. The jitter comes from the serial, so every replica and every restart
    /// computes the same time while certificates issued together still spread out.
    public static func renewalTime(of leaf: Certificate, spec: CertificateSpec) -> Date {
        let lifetime = Duration.seconds(leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore))
        let before = RenewalSchedule.renewBefore(
            lifetime: lifetime, seconds: spec.renewBefore.map { $0.components.seconds },
            percentage: spec.renewBeforePercentage
        )
        let digest = Array(SHA256.hash(data: leaf.serialNumber.bytes))
        let fraction = Double(digest.prefix(6).reduce(0) { $0 << 8 | UInt64($1) }) / Double(1 << 48)
        return RenewalSchedule.renewalTime(
            notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter, renewBefore: before, jitter: fraction)
    }

    /// The Secret's certificate, if the key matches it and its chain leads to one of `trustedRoots`.
    static func inspect(_ secret: KubernetesObject, trustedRoots: [Certificate], now: Date) -> Result<
        (certificate: Certificate, chain: [Certificate]), ContentProblem
    > {
        let data = secret.data
        guard let crt = data["tls.crt"].flatMap({ String(bytes: $0, encoding: .utf8) }),
            let chain = try? PEMFiles.certificates(in: crt, source: "tls.crt"), let leaf = chain.first
        else {
            return .failure(ContentProblem("tls.crt holds no certificate"))
        }
        guard let keyText = data["tls.key"].flatMap({ String(bytes: $0, encoding: .utf8) }),
            let key = try? PrivateKeyPEM.read(keyText)
        else {
            return .failure(ContentProblem("tls.key holds no readable private key"))
        }
        guard key.publicKey == leaf.publicKey else {
            return .failure(ContentProblem("tls.key does not match the certificate in tls.crt"))
        }
        guard !trustedRoots.isEmpty else { return .success((leaf, chain)) }
        var current = leaf
        for issuer in chain.dropFirst() + trustedRoots {
            guard current.issuer == issuer.subject, issuer.publicKey.isValidSignature(current.signature, for: current)
            else { continue }
            if trustedRoots.contains(issuer) { return .success((leaf, chain)) }
            current = issuer
        }
        return .failure(ContentProblem("the certificate in tls.crt was not issued by this Signet CA"))
    }

    /// The Secret's leaf, if it is sound and unexpired.
    static func inspectedLeaf(_ secret: KubernetesObject, roots: [Certificate], now: Date) -> Certificate? {
        guard case .success(let found) = inspect(secret, trustedRoots: roots, now: now),
            now < found.certificate.notValidAfter
        else { return nil }
        return found.certificate
    }

    struct ContentProblem: Error, Equatable, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

}
