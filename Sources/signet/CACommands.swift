import ArgumentParser
import Foundation
import Logging
import SignetAuthority
import SignetKeyVault
import SignetKeys
import SignetPKCS11
import SignetServer
import SwiftASN1
import X509

#if canImport(Glibc)
    import Glibc
#endif

struct CACommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca",
        abstract: "Create or adopt the intermediate CA Signet issues from.",
        subcommands: [Init.self, Import.self, RootCRL.self]
    )

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an offline root and an intermediate signed by it.",
            discussion: """
                Writes root.crt, root.key, intermediate.crt and intermediate.key (keys 0600) into DIR. Move root.key \
                off the machine afterwards: Signet never needs it to issue.
                """
        )

        @Option(help: "The CA directory to create.")
        var dir: String

        @Option(help: "ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096.")
        var keyType: String = KeyAlgorithm.ecdsaP256.rawValue

        @Option(help: "The organisation named in both certificates.")
        var org: String = "Signet"

        @Option(help: "How long the root is valid (e.g. 10y, 3650d).")
        var rootValidity: String = "10y"

        @Option(help: "How long the intermediate is valid (e.g. 5y).")
        var intermediateValidity: String = "5y"

        @Option(help: "Encrypt both keys (PKCS#8, PBES2 AES-256) with the passphrase in this file.")
        var passphraseFile: String?

        @Flag(help: "Replace existing files.")
        var force = false

        @OptionGroup var vault: KeyVaultOptions

        @Option(help: "Create a new key (or key version) in the vault first: ec-p256, ec-p384 or rsa-3072.")
        var createKey: String?

        @OptionGroup var token: PKCS11Options

        @Flag(
            help:
                "With --key-vault or --pkcs11-module: write the intermediate's CSR (signed by that key) for an external root, and stop."
        )
        var csrOnly = false

        func run() async throws {
            if vault.keyVault != nil, token.pkcs11Module != nil {
                throw ValidationError("give at most one of --key-vault and --pkcs11-module")
            }
            if let url = vault.keyVault {
                try await initWithKeyVault(url: url)
                return
            }
            if token.pkcs11Module != nil {
                let signer = try await token.connect()
                try await initWithExternalKey(
                    signer, keyDescription: signer.reference.uri,
                    serveHint: token.serveHint, importHint: token.importHint
                )
                return
            }
            guard !csrOnly else { throw ValidationError("--csr-only needs --key-vault or --pkcs11-module") }
            guard let algorithm = KeyAlgorithm(rawValue: keyType), algorithm != .ed25519 else {
                throw ValidationError("--key-type must be one of ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096")
            }
            var initializer = CAInitializer()
            initializer.keyAlgorithm = algorithm
            initializer.organization = org
            initializer.rootLifetime = try lifetime(rootValidity, "--root-validity")
            initializer.intermediateLifetime = try lifetime(intermediateValidity, "--intermediate-validity")
            initializer.passphrase = try passphraseFile.map(PassphraseInput.read(file:))
            let result = try await initializer.create(in: CADirectory(path: dir), overwrite: force)
            print(
                "root:         \(dir)/root.crt  (\(result.root.subject), until \(result.root.notValidAfter.formatted(.iso8601)))"
            )
            print(
                "intermediate: \(dir)/intermediate.crt  (\(result.intermediate.subject), until \(result.intermediate.notValidAfter.formatted(.iso8601)))"
            )
            print("keys:         \(dir)/root.key, \(dir)/intermediate.key (0600). Keep root.key offline.")
        }

        /// Uses (or first creates) the Key Vault key as the intermediate's key.
        func initWithKeyVault(url: String) async throws {
            let keyName = try vault.requiredKeyName()
            let parameters: [String: any Sendable]? =
                switch createKey {
                case nil: nil
                case "ec-p256": ["kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"]]
                case "ec-p384": ["kty": "EC", "crv": "P-384", "key_ops": ["sign", "verify"]]
                case "rsa-3072": ["kty": "RSA", "key_size": 3072, "key_ops": ["sign", "verify"]]
                default: throw ValidationError("--create-key must be ec-p256, ec-p384 or rsa-3072")
                }
            try await vault.session(url: url) { client in
                if let parameters {
                    _ = try await client.createKey(name: keyName, parameters: parameters)
                }
                let signer = try await KeyVaultSigner.connect(client: client, keyName: keyName, keyVersion: nil)
                let version = URL(string: signer.keyID)?.lastPathComponent ?? ""
                try await initWithExternalKey(
                    signer, keyDescription: signer.keyID,
                    serveHint:
                        "SIGNET_KEYVAULT_URL=\(url) SIGNET_KEYVAULT_KEY=\(keyName) SIGNET_KEYVAULT_KEY_VERSION=\(version)",
                    importHint: "--key-vault \(url) --key-name \(keyName)"
                )
            }
        }

        /// The intermediate's key stays where it is (a vault, a token): the CSR is signed there, which proves the key
        /// is usable, then the local offline root signs the certificate, or the CSR is written out for another root.
        func initWithExternalKey(_ signer: some CASigner, keyDescription: String, serveHint: String, importHint: String)
            async throws
        {
            let subject = try DistinguishedName {
                OrganizationName(org)
                CommonName("\(org) Intermediate CA")
            }
            let csr = try await CertificateSigningRequest(
                version: .v1, subject: subject, asyncPrivateKey: signer.privateKey,
                attributes: CertificateSigningRequest.Attributes(),
                signatureAlgorithm: try IssuingCA.signatureAlgorithm(for: signer.privateKey.publicKey)
            )
            guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
                throw CommandFailure("the CSR signed by \(keyDescription) does not verify; nothing was written")
            }
            if csrOnly {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try PEMFiles.write(
                    try csr.serializeAsPEM().pemString + "\n", to: dir + "/intermediate.csr", mode: 0o644,
                    overwrite: force)
                print("csr:          \(dir)/intermediate.csr (signed by \(keyDescription))")
                print(
                    "next:         have your root sign it, then 'signet ca import --cert <intermediate.crt> --root <root.crt> \(importHint)'"
                )
                return
            }
            var initializer = CAInitializer()
            initializer.organization = org
            initializer.rootLifetime = try lifetime(rootValidity, "--root-validity")
            initializer.intermediateLifetime = try lifetime(intermediateValidity, "--intermediate-validity")
            initializer.passphrase = try passphraseFile.map(PassphraseInput.read(file:))
            let result = try await initializer.create(
                in: CADirectory(path: dir), overwrite: force, externalIntermediateKey: csr.publicKey)
            print(
                "root:         \(dir)/root.crt  (\(result.root.subject), until \(result.root.notValidAfter.formatted(.iso8601)))"
            )
            print("intermediate: \(dir)/intermediate.crt  (key \(keyDescription))")
            print("serve with:   SIGNET_CA_DIR=\(dir) \(serveHint)")
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Adopt an existing intermediate CA after checking it.",
            discussion: """
                Checks, in order: the key matches the certificate; the certificate has basicConstraints CA:true and \
                keyUsage keyCertSign; it, the chain and the root are currently valid; the chain verifies up to the \
                root. Only then are the files copied into DIR.
                """
        )

        @Option(help: "The intermediate's certificate (PEM).")
        var cert: String

        @Option(help: "The intermediate's private key: PKCS#8, SEC1, PKCS#1 or encrypted PKCS#8 PEM.")
        var key: String?

        @OptionGroup var vault: KeyVaultOptions

        @Option(help: "The Key Vault key's version (default: the current one).")
        var keyVersion: String?

        @OptionGroup var token: PKCS11Options

        @Option(help: "The root certificate (PEM).")
        var root: String

        @Option(help: "Further intermediates between this one and the root (PEM).")
        var chain: String?

        @Option(help: "The CA directory to write (signet serve's ca.directory).")
        var dir: String = "./signet-data/ca"

        @Option(help: "A file whose first line is the key's passphrase.")
        var passphraseFile: String?

        @Option(help: "An environment variable holding the key's passphrase.")
        var passphraseEnv: String?

        @Flag(help: "Replace an existing CA in DIR.")
        var force = false

        func run() async throws {
            let source: CAImporter.KeySource
            switch (key, vault.keyVault, token.pkcs11Module) {
            case let (path?, nil, nil):
                source = .file(
                    path: path,
                    passphrase: try PassphraseInput.resolve(file: passphraseFile, environment: passphraseEnv))
            case let (nil, url?, nil):
                let keyName = try vault.requiredKeyName()
                let publicKey = try await vault.session(url: url) { client in
                    try await KeyVaultSigner.connect(client: client, keyName: keyName, keyVersion: keyVersion)
                        .privateKey.publicKey
                }
                source = .external(publicKey)
            case (nil, nil, _?):
                source = .external(try await token.connect().privateKey.publicKey)
            default:
                throw ValidationError("give exactly one of --key, --key-vault and --pkcs11-module")
            }
            do {
                try await CAImporter.importCA(
                    certificatePath: cert, key: source, rootPath: root, chainPath: chain, into: CADirectory(path: dir),
                    overwrite: force
                )
            } catch let failure as CAMaterialCheck.Failure {
                throw CommandFailure("refused: \(failure)")
            }
            print("imported into \(dir)")
        }
    }
}

enum PassphraseInput {
    static func read(file path: String) throws -> [UInt8] {
        do {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            return Array((text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "").utf8)
        } catch {
            throw ValidationError("cannot read the passphrase file \(path)")
        }
    }

    static func resolve(file: String?, environment: String?) throws -> [UInt8]? {
        if let file { return try read(file: file) }
        if let environment {
            guard let value = ProcessInfo.processInfo.environment[environment] else {
                throw ValidationError("the environment variable \(environment) is not set")
            }
            return Array(value.utf8)
        }
        return nil
    }
}

func lifetime(_ text: String, _ option: String) throws -> Duration {
    do {
        return try Lifetime.parse(text)
    } catch {
        throw ValidationError("\(option): \(error)")
    }
}

/// An error whose message is the whole story; ArgumentParser prints it and exits non-zero.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Where a CA key in Azure Key Vault is, for `ca init` and `ca import`. Entra ID credentials come from the
/// AZURE_* environment variables.
struct KeyVaultOptions: ParsableArguments {
    @Option(help: "The Azure Key Vault holding (or to hold) the intermediate's key, https://NAME.vault.azure.net.")
    var keyVault: String?

    @Option(help: "The Key Vault key's name (with --key-vault).")
    var keyName: String?

    @Option(
        help: "CA bundle for the vault's TLS certificate, if it is not publicly trusted (or SIGNET_KEYVAULT_CA_FILE).")
    var vaultCAFile: String?

    func requiredKeyName() throws -> String {
        guard let keyName else { throw ValidationError("--key-vault needs --key-name") }
        return keyName
    }

    /// Runs `body` with a client for the vault, closed afterwards.
    func session<T>(url: String, _ body: (KeyVaultClient) async throws -> T) async throws -> T {
        try await KeyVaultConnection.with(
            vaultURL: url, caFile: vaultCAFile ?? ProcessInfo.processInfo.environment["SIGNET_KEYVAULT_CA_FILE"],
            logger: Logger(label: "signet"), body
        )
    }
}

/// Where a CA key on a PKCS#11 token is, for `ca init` and `ca import`.
struct PKCS11Options: ParsableArguments {
    @Option(
        help: "The HSM vendor's PKCS#11 library holding the intermediate's key (e.g. /usr/lib/softhsm/libsofthsm2.so).")
    var pkcs11Module: String?

    @Option(help: "The token's label (with --pkcs11-module).")
    var tokenLabel: String?

    @Option(help: "The key pair's CKA_LABEL on the token.")
    var keyLabel: String?

    @Option(help: "The key pair's CKA_ID on the token, in hex (instead of --key-label).")
    var keyID: String?

    @Option(help: "A file whose first line is the token's user PIN.")
    var pinFile: String?

    @Option(help: "An environment variable holding the token's user PIN.")
    var pinEnv: String?

    func connect() async throws -> PKCS11Signer {
        guard let module = pkcs11Module, let tokenLabel else {
            throw ValidationError("--pkcs11-module needs --token-label")
        }
        guard (keyLabel != nil) != (keyID != nil) else {
            throw ValidationError("--pkcs11-module needs exactly one of --key-label and --key-id")
        }
        let id = try keyID.map { hex in
            guard let bytes = PKCS11KeyReference.keyID(hex: hex) else {
                throw ValidationError("--key-id '\(hex)' is not hex")
            }
            return bytes
        }
        guard let pin = try PassphraseInput.resolve(file: pinFile, environment: pinEnv) else {
            throw ValidationError("--pkcs11-module needs --pin-file or --pin-env")
        }
        return try await PKCS11Signer.connect(
            module: module, key: PKCS11KeyReference(tokenLabel: tokenLabel, keyLabel: keyLabel, keyID: id), pin: pin,
            sessions: 1
        )
    }

    /// How `signet serve` finds the same key (the PIN by the same route).
    var serveHint: String {
        var settings = ["SIGNET_PKCS11_MODULE=\(pkcs11Module ?? "")", "SIGNET_PKCS11_TOKEN=\(tokenLabel ?? "")"]
        if let keyLabel { settings.append("SIGNET_PKCS11_KEY_LABEL=\(keyLabel)") }
        if let keyID { settings.append("SIGNET_PKCS11_KEY_ID=\(keyID)") }
        if let pinFile { settings.append("SIGNET_PKCS11_PIN_FILE=\(pinFile)") }
        if let pinEnv { settings.append("SIGNET_PKCS11_PIN_ENV=\(pinEnv)") }
        return settings.joined(separator: " ")
    }

    var importHint: String {
        var options = ["--pkcs11-module \(pkcs11Module ?? "")", "--token-label \(tokenLabel ?? "")"]
        if let keyLabel { options.append("--key-label \(keyLabel)") }
        if let keyID { options.append("--key-id \(keyID)") }
        options.append(pinFile.map { "--pin-file \($0)" } ?? "--pin-env \(pinEnv ?? "")")
        return options.joined(separator: " ")
    }
}

extension CACommand {
    /// The root's CRL, made where the root key is kept (offline), for Signet to serve and deliver beside its own:
    /// a gateway that checks the whole chain (Envoy, `CRL_CHECK_ALL`) refuses every client when a CA of the chain has
    /// no CRL, so the root needs one too, even an empty one.
    struct RootCRL: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "crl",
            abstract: "Sign the root's CRL with the root key (offline); Signet serves it from crl.rootCRL.",
            discussion:
                "Make it again before its nextUpdate (Signet's /readyz fails within crl.readinessMargin of it). Numbers are the signing time in seconds, so each is above the last."
        )
        @Option(help: "The root certificate.") var rootCert: String
        @Option(help: "The root's private key (PEM; encrypted PKCS#8 with --passphrase-file).") var rootKey: String
        @Option(help: "The passphrase of an encrypted root key, in a file.") var passphraseFile: String?
        @Option(help: "Serial (hex) of an intermediate to list as revoked (repeatable).") var revokeIntermediate:
            [String] = []
        @Option(
            help:
                "The reason for --revoke-intermediate: keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation."
        )
        var reason: String = "superseded"
        @Option(help: "How long the CRL is valid, in days.") var days: Int = 30
        @Option(help: "Where to write it (DER; PEM beside it with .pem).") var out: String

        func run() async throws {
            guard days >= 1 else { throw ValidationError("--days must be at least 1") }
            guard let revocationReason = RevocationReason(name: reason) else {
                throw ValidationError("--reason: '\(reason)' is not an RFC 5280 reason name")
            }
            let root =
                try PEMFiles.certificates(at: rootCert).first
                ?? { throw ValidationError("no certificate in \(rootCert)") }()
            let passphrase = try passphraseFile.map { try PassphraseFile.read($0) }
            let key = try FileKeySigner(path: rootKey, passphrase: passphrase).privateKey
            guard key.publicKey == root.publicKey else {
                throw ValidationError("\(rootKey) is not the key of \(rootCert)")
            }
            let signer = try IssuingCA(certificate: root, root: root, key: key)
            let now = Date()
            let entries = try revokeIntermediate.map { hex in
                guard let bytes = [UInt8](hexString: hex) else {
                    throw ValidationError("--revoke-intermediate: '\(hex)' is not a hex serial")
                }
                return RevocationList.Entry(serial: bytes, revokedAt: now, reason: revocationReason)
            }
            let list = try await RevocationList.sign(
                by: signer, number: Int64(now.timeIntervalSince1970), thisUpdate: now,
                nextUpdate: now.addingTimeInterval(Double(days) * 86_400), entries: entries
            )
            try Data(list.der).write(to: URL(fileURLWithPath: out))
            try list.pem.write(toFile: out + ".pem", atomically: true, encoding: .utf8)
            print(
                "root CRL \(list.number): \(entries.count) entries, next update \(list.nextUpdate.formatted(.iso8601)); \(out) and \(out).pem"
            )
        }
    }
}
