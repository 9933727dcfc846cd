import ArgumentParser
import SignetAuthority
import SignetKeys
import X509

#if canImport(Glibc)
import Glibc
#endif

import Foundation

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

        func run() async throws {
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
        var key: String

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
            let passphrase = try PassphraseInput.resolve(file: passphraseFile, environment: passphraseEnv)
            do {
                try await CAImporter.importCA(
                    certificatePath: cert, keyPath: key, rootPath: root, chainPath: chain,
                    passphrase: passphrase, into: CADirectory(path: dir), overwrite: force
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
