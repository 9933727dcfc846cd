import ArgumentParser
import Foundation
import SignetACME
import SignetAuthority
import SignetLedger
import SignetServer

struct ACMECommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acme",
        abstract:
            "Manage the ACME front end: external account keys, accounts, renewal information (run on the server).",
        subcommands: [EAB.self, Accounts.self, ARI.self]
    )

    struct EAB: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "eab", abstract: "External Account Binding keys (RFC 8555 §7.3.4).",
            subcommands: [Create.self, List.self, Revoke.self]
        )

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract:
                    "Create a key id and HMAC key, printed once; the ledger keeps the HMAC key sealed with the ledger key.",
                discussion: """
                    Accounts registered with the key are bound to it: they may order only names its --allow patterns \
                    (and the directory) allow, and are recorded as requester acme:DIRECTORY/LABEL/ACCOUNT. A key may bind \
                    several accounts (one per ACME client) until it is revoked; revoking it stops its accounts from ordering.
                    """
            )
            @OptionGroup var location: LedgerLocation
            @Option(help: "The ACME directory (acme.directories[].name) the key binds accounts to.")
            var directory: String
            @Option(
                help:
                    "A name pattern accounts bound with this key may order (repeatable; default: whatever the directory allows)."
            )
            var allow: [String] = []
            @Option(help: "A label recorded in every certificate's requester (default: the key id).")
            var name: String?

            func run() async throws {
                let configuration = try location.configuration()
                guard let policy = configuration.acme.directory(named: directory) else {
                    throw ValidationError(
                        "no ACME directory named '\(directory)' in the configuration; known: \(configuration.acme.directories.map(\.name).joined(separator: ", "))"
                    )
                }
                for pattern in allow {
                    do { _ = try NamePattern(pattern) } catch { throw ValidationError("--allow: \(error)") }
                }
                if let name, name.isEmpty || !name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.@".contains($0) }) {
                    throw ValidationError("--name may contain letters, digits and - _ . @ only")
                }
                let keyID = "kid-" + Base64URL.encode((0..<12).map { _ in UInt8.random(in: 0...255) })
                let mac = (0..<32).map { _ in UInt8.random(in: 0...255) }
                let ledger = try await location.open(sealing: true)
                try await ledger.createExternalKey(
                    ACMEExternalKey(
                        keyID: keyID, directory: policy.name, label: name ?? keyID, allowedNames: allow,
                        createdAt: Date()), macKey: mac, actor: "cli"
                )
                print("key id:   \(keyID)")
                print("hmac key: \(Base64URL.encode(mac))")
                FileHandle.standardError.write(
                    Data("EAB key created for directory '\(policy.name)'; the HMAC key is shown only this once\n".utf8))
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List EAB keys (never their HMAC keys).")
            @OptionGroup var location: LedgerLocation
            @Option(help: "Only this directory's keys.")
            var directory: String?

            func run() async throws {
                let keys = try await location.open().externalKeys(directory: directory)
                Table.print(
                    header: ["KEY ID", "DIRECTORY", "LABEL", "ALLOW", "CREATED", "REVOKED"],
                    rows: keys.map { key in
                        [
                            key.keyID, key.directory, key.label,
                            key.allowedNames.isEmpty ? "(directory's)" : key.allowedNames.joined(separator: ","),
                            key.createdAt.formatted(.iso8601), key.revokedAt?.formatted(.iso8601) ?? "-",
                        ]
                    })
            }
        }

        struct Revoke: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract:
                    "Revoke an EAB key: no new account binds with it, and accounts bound with it may no longer order.")
            @OptionGroup var location: LedgerLocation
            @Argument(help: "The key id.")
            var keyID: String

            func run() async throws {
                let ledger = try await location.open()
                guard try await ledger.revokeExternalKey(id: keyID, at: Date(), actor: "cli") else {
                    throw ValidationError("no active EAB key '\(keyID)'")
                }
                print("revoked \(keyID)")
            }
        }
    }

    struct Accounts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "accounts", abstract: "ACME accounts.", subcommands: [List.self, Deactivate.self]
        )

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "List accounts, with the requester their certificates are recorded under.")
            @OptionGroup var location: LedgerLocation
            @Option(help: "Only this directory's accounts.")
            var directory: String?

            func run() async throws {
                let accounts = try await location.open().accounts(directory: directory)
                Table.print(
                    header: ["ACCOUNT", "DIRECTORY", "STATUS", "EAB KEY", "CONTACT", "CREATED", "REQUESTER"],
                    rows: accounts.map { account in
                        [
                            account.id, account.directory,
                            account.status.rawValue + (account.externalKeyRevoked ? " (key revoked)" : ""),
                            account.externalKeyID ?? "-", account.contact.joined(separator: ","),
                            account.createdAt.formatted(.iso8601), account.requester,
                        ]
                    })
            }
        }

        struct Deactivate: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Deactivate an account: its key can no longer do anything (RFC 8555 §7.3.6).")
            @OptionGroup var location: LedgerLocation
            @Argument(help: "The account id (the last part of its URL).")
            var account: String

            func run() async throws {
                let ledger = try await location.open()
                guard let found = try await ledger.account(id: account) else {
                    throw ValidationError("no account '\(account)'")
                }
                guard found.status == .valid else {
                    throw ValidationError("account '\(account)' is already \(found.status.rawValue)")
                }
                _ = try await ledger.updateAccount(id: account, contact: nil, status: .deactivated)
                print("deactivated \(account)")
            }
        }
    }

    struct ARI: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ari", abstract: "ACME Renewal Information (RFC 9773).", subcommands: [Advance.self]
        )

        struct Advance: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract:
                    "Ask ARI clients to renew chosen certificates now (after a key compromise, a mis-issuance, a CA change).",
                discussion:
                    "Their renewalInfo window moves into the past; clients that poll it (certbot 4.1+, lego, Caddy, cert-manager with ARI) renew at once."
            )
            @OptionGroup var location: LedgerLocation
            @Option(help: "A certificate serial (hex; repeatable).")
            var serial: [String] = []
            @Option(help: "Every valid certificate of this requester (acme:DIRECTORY/LABEL/ACCOUNT, token:NAME, …).")
            var requester: String?

            func run() async throws {
                guard !serial.isEmpty || requester != nil else {
                    throw ValidationError("name certificates with --serial or --requester")
                }
                let ledger = try await location.open()
                var serials = serial
                if let requester {
                    var query = CertificateQuery()
                    query.requester = requester
                    query.status = .valid
                    query.limit = 1000
                    var page = try await ledger.certificates(matching: query)
                    serials += page.entries.map(\.serial)
                    while let cursor = page.nextCursor {
                        query.cursor = cursor
                        page = try await ledger.certificates(matching: query)
                        serials += page.entries.map(\.serial)
                    }
                }
                let count = try await ledger.advanceRenewal(serials: serials, at: Date())
                print("advanced the renewal window of \(count) certificate(s)")
                if count < serials.count {
                    FileHandle.standardError.write(
                        Data("\(serials.count - count) serial(s) are not in the ledger\n".utf8))
                }
            }
        }
    }
}
