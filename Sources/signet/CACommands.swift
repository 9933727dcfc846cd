import ArgumentParser
import SignetAuthority
import SignetKeyVault
import SwiftASN1
import SignetKeys
import X509
import X509

#if canImport(Glibc)
import Glibc
#endif

import Foundation
import Logging

struct CACommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca",
        abstract: "Create or adopt the intermediate CA Signet issues from.",
        subcommands: [Init.self, Import.self]
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

        @Flag(help: "With --key-vault: write the intermediate's CSR (signed in the vault) for an external root, and stop.")
        var csrOnly = false

        func run() async throws {
            if let url = vault.keyVault {
                try await initWithKeyVault(url: url)
                return
            }
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
            print("root:         \(dir)/root.crt  (\(result.root.subject), until \(result.root.notValidAfter.formatted(.iso8601)))")
            print("intermediate: \(dir)/intermediate.crt  (\(result.intermediate.subject), until \(result.intermediate.notValidAfter.formatted(.iso8601)))")
            print("keys:         \(dir)/root.key, \(dir)/intermediate.key (0600). Keep root.key offline.")
        }

        /// The intermediate's key stays in Key Vault: the CSR is signed there (which proves the vault holds the
        /// key), then the local offline root signs the certificate, or the CSR is written out for another root.
        func initWithKeyVault(url: String) async throws {
            let keyName = try vault.requiredKeyName()
            let parameters: [String: any Sendable]? = switch createKey {
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
                    throw CommandFailure("the CSR signed in Key Vault does not verify; nothing was written")
                }
                let directory = CADirectory(path: dir)
                if csrOnly {
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                    try PEMFiles.write(try csr.serializeAsPEM().pemString + "\n", to: dir + "/intermediate.csr", mode: 0o644, overwrite: force)
                    print("csr:          \(dir)/intermediate.csr (signed by \(signer.keyID))")
                    print("next:         have your root sign it, then 'signet ca import --cert <intermediate.crt> --root <root.crt> --key-vault \(url) --key-name \(keyName)'")
                    return
                }
                var initializer = CAInitializer()
                initializer.organization = org
                initializer.rootLifetime = try lifetime(rootValidity, "--root-validity")
                initializer.intermediateLifetime = try lifetime(intermediateValidity, "--intermediate-validity")
                initializer.passphrase = try passphraseFile.map(PassphraseInput.read(file:))
                let result = try await initializer.create(in: directory, overwrite: force, externalIntermediateKey: csr.publicKey)
                print("root:         \(dir)/root.crt  (\(result.root.subject), until \(result.root.notValidAfter.formatted(.iso8601)))")
                print("intermediate: \(dir)/intermediate.crt  (key \(signer.keyID))")
                print("serve with:   SIGNET_CA_DIR=\(dir) SIGNET_KEYVAULT_URL=\(url) SIGNET_KEYVAULT_KEY=\(keyName) SIGNET_KEYVAULT_KEY_VERSION=\(URL(string: signer.keyID)?.lastPathComponent ?? "")")
            }
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
            switch (key, vault.keyVault) {
            case let (path?, nil):
                source = .file(path: path, passphrase: try PassphraseInput.resolve(file: passphraseFile, environment: passphraseEnv))
            case let (nil, url?):
                let keyName = try vault.requiredKeyName()
                let publicKey = try await vault.session(url: url) { client in
                    try await KeyVaultSigner.connect(client: client, keyName: keyName, keyVersion: keyVersion).privateKey.publicKey
                }
                source = .external(publicKey)
            default:
                throw ValidationError("give exactly one of --key and --key-vault")
            }
            do {
                try await CAImporter.importCA(
                    certificatePath: cert, key: source, rootPath: root, chainPath: chain, into: CADirectory(path: dir), overwrite: force
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

    @Option(help: "CA bundle for the vault's TLS certificate, if it is not publicly trusted (or SIGNET_KEYVAULT_CA_FILE).")
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
