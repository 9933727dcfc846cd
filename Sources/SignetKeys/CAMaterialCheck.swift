import SignetAuthority
import SwiftASN1
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The checks an intermediate must pass before Signet issues with it, each failing with its own message.
/// Run by `signet ca import` before anything is copied, and by `signet serve` before it starts.
public enum CAMaterialCheck {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case keyDoesNotMatch(key: String, certificate: String)
        case notACertificateAuthority(String)
        case notYetValid(String, Date)
        case expired(String, Date)
        case rootNotSelfSigned
        case chainDoesNotVerify(String)

        public var description: String {
            switch self {
            case let .keyDoesNotMatch(key, certificate):
                "key check failed: the private key (public key SHA-256 \(key)) does not match the intermediate certificate's public key (SHA-256 \(certificate))"
            case .notACertificateAuthority(let reason):
                "CA check failed: the intermediate certificate \(reason)"
            case let .notYetValid(which, date):
                "validity check failed: the \(which) certificate is not valid until \(date.formatted(.iso8601))"
            case let .expired(which, date):
                "validity check failed: the \(which) certificate expired at \(date.formatted(.iso8601))"
            case .rootNotSelfSigned:
                "chain check failed: the root certificate is not self-signed"
            case .chainDoesNotVerify(let reason):
                "chain check failed: the intermediate does not verify up to the root (\(reason))"
            }
        }
    }

    public static func validate(
        certificate: Certificate,
        key: Certificate.PublicKey,
        intermediates: [Certificate],
        root: Certificate,
        now: Date = Date()
    ) async throws(Failure) {
        guard key == certificate.publicKey else {
            throw .keyDoesNotMatch(key: key.sha256Fingerprint, certificate: certificate.publicKey.sha256Fingerprint)
        }

        switch try? certificate.extensions.basicConstraints {
        case .isCertificateAuthority:
            break
        case .notCertificateAuthority:
            throw .notACertificateAuthority("has basicConstraints CA:false")
        case nil:
            throw .notACertificateAuthority("has no basicConstraints extension (CA:true is required)")
        }
        if let usage = try? certificate.extensions.keyUsage {
            guard usage.keyCertSign else { throw .notACertificateAuthority("has a keyUsage without keyCertSign") }
        } else {
            throw .notACertificateAuthority("has no keyUsage extension (keyCertSign is required)")
        }

        let named = [("intermediate", certificate)] + intermediates.map { ("chain", $0) } + [("root", root)]
        for (which, cert) in named {
            if now < cert.notValidBefore { throw .notYetValid(which, cert.notValidBefore) }
            if now > cert.notValidAfter { throw .expired(which, cert.notValidAfter) }
        }

        guard root.subject == root.issuer, root.publicKey.isValidSignature(root.signature, for: root) else {
            throw .rootNotSelfSigned
        }
        var verifier = Verifier(rootCertificates: CertificateStore([root])) {
            // Validity dates were checked against `now` above; the policy checks signatures, constraints and the path.
            RFC5280Policy()
        }
        let result = await verifier.validate(leaf: certificate, intermediates: CertificateStore(intermediates))
        if case .couldNotValidate(let failures) = result {
            let reasons = failures.map { String(describing: $0.policyFailureReason) }
            throw .chainDoesNotVerify(reasons.first ?? "no path to the root")
        }
    }
}

/// The issuing CA as found in a CA directory, checked and ready to sign through a signer.
public enum CALoader {
    /// The CA of `directory`, signing with `key`: a key in memory, or one whose signatures are made elsewhere (Key
    /// Vault, a token), wrapped as it is to be used (admission limits, timing). Checked before it is returned.
    public static func load(from directory: CADirectory, key: Certificate.PrivateKey, now: Date = Date()) async throws
        -> IssuingCA
    {
        let certificate = try singleCertificate(at: directory.certificate)
        let root = try singleCertificate(at: directory.rootCertificate)
        let intermediates =
            FileManager.default.fileExists(atPath: directory.chain)
            ? try PEMFiles.certificates(at: directory.chain) : []
        try await CAMaterialCheck.validate(
            certificate: certificate, key: key.publicKey, intermediates: intermediates, root: root, now: now)
        return try IssuingCA(certificate: certificate, intermediates: intermediates, root: root, key: key)
    }

    /// The CA of `directory`, signing through `signer`.
    public static func load(from directory: CADirectory, signer: any CASigner, now: Date = Date()) async throws
        -> IssuingCA
    {
        try await load(from: directory, key: signer.privateKey, now: now)
    }

    static func singleCertificate(at path: String) throws -> Certificate {
        let all = try PEMFiles.certificates(at: path)
        guard all.count == 1, let first = all.first else {
            throw CAFileError.unreadable(path, "holds \(all.count) certificates; exactly one is expected")
        }
        return first
    }
}
