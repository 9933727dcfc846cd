import SignetAuthority
import SwiftASN1
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Creates an offline root and an intermediate signed by it: the job the Istio tutorial gives to an openssl script.
public struct CAInitializer: Sendable {
    public var keyAlgorithm: KeyAlgorithm = .ecdsaP256
    public var organization: String = "Signet"
    public var rootLifetime: Duration = .seconds(10 * 365 * 86_400)
    public var intermediateLifetime: Duration = .seconds(5 * 365 * 86_400)
    /// Encrypts both private keys (PBES2, AES-256-CBC) when set.
    public var passphrase: [UInt8]?

    public init() {}

    public struct Result: Sendable {
        public let root: Certificate
        public let intermediate: Certificate
    }

    /// Writes root.crt, root.key, intermediate.crt and intermediate.key into `directory` (keys 0600).
    /// Refuses to replace any existing file unless `overwrite`, and checks that before writing anything.
    ///
    /// With `externalIntermediateKey` (a key held in Key Vault or an HSM), the intermediate is issued for that
    /// public key and no intermediate.key is written: the key stays where it is.
    @discardableResult
    public func create(
        in directory: CADirectory, overwrite: Bool, externalIntermediateKey: Certificate.PublicKey? = nil,
        now: Date = Date()
    ) async throws -> Result {
        let paths =
            [directory.rootCertificate, directory.rootKey, directory.certificate]
            + (externalIntermediateKey == nil ? [directory.key] : [])
        if !overwrite, let existing = paths.first(where: FileManager.default.fileExists(atPath:)) {
            throw CAFileError.exists(existing)
        }
        guard intermediateLifetime <= rootLifetime else {
            throw CAFileError.write(directory.certificate, "the intermediate's validity cannot exceed the root's")
        }
        try FileManager.default.createDirectory(
            atPath: directory.path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])

        let (rootKey, rootKeyPEM) = try keyAlgorithm.generate()
        let generated = externalIntermediateKey == nil ? try keyAlgorithm.generate() : nil
        let intermediatePublicKey = externalIntermediateKey ?? generated!.key.publicKey
        let start = Date(
            timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down) - LeafCertificateFactory.backdating)
        let rootName = try DistinguishedName {
            OrganizationName(organization)
            CommonName("\(organization) Root CA")
        }
        let intermediateName = try DistinguishedName {
            OrganizationName(organization)
            CommonName("\(organization) Intermediate CA")
        }
        let rootKeyID = SubjectKeyIdentifier(hash: rootKey.publicKey)
        let root = try await certificate(
            subject: rootName, key: rootKey.publicKey, issuer: rootName, issuerKey: rootKey, start: start,
            lifetime: rootLifetime,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 1))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                rootKeyID
            }
        )
        let intermediate = try await certificate(
            subject: intermediateName, key: intermediatePublicKey, issuer: rootName, issuerKey: rootKey, start: start,
            lifetime: intermediateLifetime,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: intermediatePublicKey)
                AuthorityKeyIdentifier(keyIdentifier: rootKeyID.keyIdentifier)
            }
        )

        try PEMFiles.write(try encryptedIfAsked(rootKeyPEM), to: directory.rootKey, mode: 0o600, overwrite: overwrite)
        if let generated {
            try PEMFiles.write(
                try encryptedIfAsked(generated.pkcs8PEM), to: directory.key, mode: 0o600, overwrite: overwrite)
        }
        try PEMFiles.write(try PEMFiles.pem([root]), to: directory.rootCertificate, mode: 0o644, overwrite: overwrite)
        try PEMFiles.write(
            try PEMFiles.pem([intermediate]), to: directory.certificate, mode: 0o644, overwrite: overwrite)
        return Result(root: root, intermediate: intermediate)
    }

    private func certificate(
        subject: DistinguishedName, key: Certificate.PublicKey, issuer: DistinguishedName,
        issuerKey: Certificate.PrivateKey,
        start: Date, lifetime: Duration, extensions: Certificate.Extensions
    ) async throws -> Certificate {
        try await Certificate(
            version: .v3,
            serialNumber: SerialNumbers.random(),
            publicKey: key,
            notValidBefore: start,
            notValidAfter: start.addingTimeInterval(TimeInterval(lifetime.components.seconds)),
            issuer: issuer,
            subject: subject,
            signatureAlgorithm: try IssuingCA.signatureAlgorithm(for: issuerKey.publicKey),
            extensions: extensions,
            issuerAsyncPrivateKey: issuerKey
        )
    }

    private func encryptedIfAsked(_ pkcs8PEM: String) throws -> String {
        guard let passphrase else { return pkcs8PEM }
        let der = try PEMDocument(pemString: pkcs8PEM).derBytes
        let encrypted = try EncryptedPrivateKeyInfo.encrypt(der, passphrase: passphrase)
        return PEMDocument(type: "ENCRYPTED PRIVATE KEY", derBytes: encrypted).pemString + "\n"
    }
}

/// Adopts an existing intermediate: checks it (see `CAMaterialCheck`) and copies it into a CA directory.
public enum CAImporter {
    /// Where the intermediate's key is: a file to copy into the CA directory, or a key that stays elsewhere
    /// (Key Vault, an HSM) of which only the public key is needed for the checks.
    public enum KeySource: Sendable {
        case file(path: String, passphrase: [UInt8]?)
        case external(Certificate.PublicKey)
    }

    public static func importCA(
        certificatePath: String,
        key: KeySource,
        rootPath: String,
        chainPath: String?,
        into directory: CADirectory,
        overwrite: Bool,
        now: Date = Date()
    ) async throws {
        let certificate = try CALoader.singleCertificate(at: certificatePath)
        let root = try CALoader.singleCertificate(at: rootPath)
        let intermediates = try chainPath.map(PEMFiles.certificates(at:)) ?? []
        let publicKey: Certificate.PublicKey
        var keyFile: String?
        switch key {
        case let .file(path, passphrase):
            publicKey = try FileKeySigner(path: path, passphrase: passphrase).privateKey.publicKey
            keyFile = path
        case .external(let external):
            publicKey = external
        }
        try await CAMaterialCheck.validate(
            certificate: certificate, key: publicKey, intermediates: intermediates, root: root, now: now)
        let destinations =
            (keyFile == nil ? [] : [directory.key]) + [directory.certificate, directory.rootCertificate]
            + (intermediates.isEmpty ? [] : [directory.chain])
        if !overwrite, let existing = destinations.first(where: FileManager.default.fileExists(atPath:)) {
            throw CAFileError.exists(existing)
        }
        try FileManager.default.createDirectory(
            atPath: directory.path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if let keyFile {
            // The key is copied byte for byte: an encrypted key stays encrypted.
            try PEMFiles.write(
                try String(contentsOfFile: keyFile, encoding: .utf8), to: directory.key, mode: 0o600,
                overwrite: overwrite)
        }
        try PEMFiles.write(
            try PEMFiles.pem([certificate]), to: directory.certificate, mode: 0o644, overwrite: overwrite)
        try PEMFiles.write(try PEMFiles.pem([root]), to: directory.rootCertificate, mode: 0o644, overwrite: overwrite)
        if !intermediates.isEmpty {
            try PEMFiles.write(try PEMFiles.pem(intermediates), to: directory.chain, mode: 0o644, overwrite: overwrite)
        }
    }
}
