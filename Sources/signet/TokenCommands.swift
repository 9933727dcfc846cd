import ArgumentParser
import Foundation
import Logging
import SignetAuthority
import SignetLedger
import SignetServer

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Manage API tokens (run on the server: they are written to its ledger).",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token and print it once; only its SHA-256 is stored.",
            discussion: """
                Name patterns: 'bookinfo.com' (exactly), '*.example.com' (one label below, and the wildcard name \
                itself), '**.example.com' (any depth below), '10.0.0.5' or '10.0.0.0/24' (IP addresses). A token \
                with no --allow may read the ledger but not issue (an auditor's token). Targets, for managed \
                certificates: 'cluster/namespace/secret', each part a name, '*', or a name with one '*' \
                ('aks-prod/istio-system/*-tls').
                """
        )

        @OptionGroup var location: LedgerLocation

        @Option(help: "A unique name; it is recorded as the requester of every certificate issued with the token.")
        var name: String

        @Option(help: "A name pattern the token may be issued (repeatable).")
        var allow: [String] = []

        @Option(help: "A cluster/namespace/secret pattern the token may deliver managed certificates to (repeatable).")
        var target: [String] = []

        @Option(help: "The longest certificate lifetime the token may ask for.")
        var maxDuration: String = "90d"

        @Flag(
            help:
                "An auditor's token: reads every tenant's certificates and managed certificates (with --allow it may issue too)."
        )
        var auditor = false

        @Flag(
            help:
                "An administrator's token: may revoke any tenant's certificate (POST /v1/certificates/{serial}/revoke)."
        )
        var administrator = false

        @Option(
            help: ArgumentHelp(
                "Comma-separated profiles: server, client, server-client.",
                discussion:
                    "Client certificates are identities wherever they are trusted, so a token may get them only when asked."
            ))
        var profiles: String = "server"

        func run() async throws {
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.@".contains($0) }) else {
                throw ValidationError("--name may contain letters, digits and - _ . @ only")
            }
            guard !allow.isEmpty || auditor || administrator else {
                throw ValidationError(
                    "a token needs names it may be issued (--allow), the auditor's role (--auditor) or the administrator's (--administrator); without any it could do nothing"
                )
            }
            for pattern in allow {
                do { _ = try NamePattern(pattern) } catch { throw ValidationError("--allow: \(error)") }
            }
            for pattern in target {
                do { _ = try TargetPattern(pattern) } catch { throw ValidationError("--target: \(error)") }
            }
            var chosen: [CertificateProfile] = []
            for text in profiles.split(separator: ",") {
                guard let profile = CertificateProfile(requested: text.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--profiles: '\(text)' is not one of server, client, server-client")
                }
                chosen.append(profile)
            }
            let ledger = try await location.open()
            let (token, digest) = APITokens.mint()
            try await ledger.createToken(
                TokenEntry(
                    name: name, secretSHA256: digest, allowedNames: allow, allowedProfiles: chosen,
                    maximumLifetime: try lifetime(maxDuration, "--max-duration"), createdAt: Date(),
                    allowedTargets: target, auditor: auditor,
                    administrator: administrator
                ))
            print(token)
            FileHandle.standardError.write(Data("token '\(name)' created; it is shown only this once\n".utf8))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")
        @OptionGroup var location: LedgerLocation
        @Flag(help: "JSON output.") var json = false

        func run() async throws {
            let tokens = try await location.open().tokens()
            if json {
                let rows: [[String: String]] = tokens.map { token in
                    [
                        "name": token.name, "allow": token.allowedNames.joined(separator: ","),
                        "profiles": token.allowedProfiles.map(\.rawValue).joined(separator: ","),
                        "targets": token.allowedTargets.joined(separator: ","),
                        "maxDuration": Lifetime.format(token.maximumLifetime),
                        "created": token.createdAt.formatted(.iso8601),
                        "state": token.revokedAt == nil ? "active" : "revoked",
                        "role": Self.role(of: token),
                    ]
                }
                print(
                    String(
                        decoding: try JSONSerialization.data(
                            withJSONObject: rows, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
                return
            }
            Table.print(
                header: ["NAME", "STATE", "ROLE", "ALLOW", "TARGETS", "PROFILES", "MAX", "CREATED"],
                rows: tokens.map { token in
                    [
                        token.name, token.revokedAt == nil ? "active" : "revoked", Self.role(of: token),
                        token.allowedNames.isEmpty ? "-" : token.allowedNames.joined(separator: ","),
                        token.allowedTargets.isEmpty ? "-" : token.allowedTargets.joined(separator: ","),
                        token.allowedProfiles.map(\.rawValue).joined(separator: ","),
                        Lifetime.format(token.maximumLifetime), token.createdAt.formatted(.iso8601),
                    ]
                }
            )
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token; a running server refuses it within its token cache time (1 s by default).")
        @OptionGroup var location: LedgerLocation
        @Argument(help: "The token's name.") var name: String

        func run() async throws {
            do {
                try await location.open().revokeToken(name: name, at: Date())
            } catch let error as LedgerError {
                throw CommandFailure(error.description)
            }
            print("revoked '\(name)'")
        }
    }
}

extension LedgerLocation {
    /// The ledger (SQLite or PostgreSQL, as `--database` or the configuration says); `sealing` also loads the ledger
    /// key, for commands that write or read sealed secrets.
    func open(sealing: Bool = false) async throws -> any Ledger {
        var configuration = try ServerConfiguration.load(path: configPath)
        if let database { configuration.databasePath = database }
        return try await configuration.ledgerDatabase().open(
            key: sealing ? try configuration.loadLedgerKey() : nil, logger: Logger(label: "signet.ledger"))
    }

    func configuration() throws -> ServerConfiguration {
        try ServerConfiguration.load(path: configPath)
    }
}

enum Table {
    static func print(header: [String], rows: [[String]]) {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        for row in all {
            let cells = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }
            Swift.print(cells.joined(separator: "  "))
        }
    }
}

extension TokenCommand.List {
    static func role(of token: TokenEntry) -> String {
        [token.auditor ? "auditor" : nil, token.administrator ? "administrator" : nil].compactMap { $0 }.joined(
            separator: "+"
        ).nonEmpty ?? "tenant"
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
