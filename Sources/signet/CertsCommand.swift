import ArgumentParser
import Foundation
import SignetClient
import SignetOpenAPI

struct CertsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Read the ledger through the API: what the CA has issued.",
        subcommands: [List.self, Show.self, Revoke.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List certificates, newest first.")
        @OptionGroup var server: ServerOptions
        @Option(help: "Only certificates for this host (wildcards that cover it included).") var dns: String?
        @Option(help: "valid, expired or revoked.") var status: String?
        @Option(help: "Only certificates issued to this requester (e.g. token:ci).") var requester: String?
        @Option(help: "Only certificates expiring before this time (ISO 8601).") var expiringBefore: String?
        @Option(help: "At most this many (up to 1000 per page; all pages are followed).") var limit: Int = 100
        @Flag(help: "JSON output.") var json = false

        func run() async throws {
            var items: [Components.Schemas.CertificateRecord] = []
            var query = Operations.ListCertificates.Input.Query(dnsName: dns, requester: requester)
            if let status {
                guard let parsed = Components.Schemas.CertificateStatus(rawValue: status) else {
                    throw ValidationError("--status must be valid, expired or revoked")
                }
                query.status = parsed
            }
            if let expiringBefore {
                guard let date = ISO8601DateFormatter().date(from: expiringBefore) else {
                    throw ValidationError("--expiring-before must be an ISO 8601 time such as 2027-01-01T00:00:00Z")
                }
                query.expiringBefore = date
            }
            try await SignetClient.with(server) { client in
                repeat {
                    query.limit = min(1000, limit - items.count)
                    let page = try await client.certificates(query)
                    items += page.items
                    query.cursor = page.nextCursor
                } while query.cursor != nil && items.count < limit
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                encoder.dateEncodingStrategy = .iso8601
                print(String(decoding: try encoder.encode(items), as: UTF8.self))
                return
            }
            Table.print(
                header: ["SERIAL", "STATUS", "NOT AFTER", "PROFILE", "REQUESTER", "NAMES"],
                rows: items.map { item in
                    [
                        item.serial, item.status.rawValue, item.notAfter.formatted(.iso8601), item.profile.rawValue,
                        item.requester,
                        (item.dnsNames + item.ipAddresses).joined(separator: ","),
                    ]
                }
            )
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one certificate.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "The serial number (hexadecimal).") var serial: String
        @Flag(help: "JSON output.") var json = false
        @Flag(help: "Print the chain as PEM.") var pem = false

        func run() async throws {
            try await SignetClient.with(server) { client in
                if pem {
                    print(try await client.chain(serial: serial), terminator: "")
                    return
                }
                guard let item = try await client.record(serial: serial) else {
                    throw CommandFailure("404 Not Found: no certificate \(serial) that this credential may read")
                }
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    encoder.dateEncodingStrategy = .iso8601
                    print(String(decoding: try encoder.encode(item), as: UTF8.self))
                    return
                }
                let fields: [(String, String)] =
                    [
                        ("serial", item.serial), ("status", item.status.rawValue), ("subject", item.subject),
                        ("dnsNames", item.dnsNames.joined(separator: ", ")),
                        ("ipAddresses", item.ipAddresses.joined(separator: ", ")),
                        ("profile", item.profile.rawValue), ("notBefore", item.notBefore.formatted(.iso8601)),
                        ("notAfter", item.notAfter.formatted(.iso8601)),
                        ("issuedAt", item.issuedAt.formatted(.iso8601)),
                        ("requester", item.requester), ("issuerKeyId", item.issuerKeyId),
                        ("publicKeySHA256", item.publicKeySHA256), ("csrSHA256", item.csrSHA256),
                    ]
                    + (item.revokedAt.map {
                        [("revokedAt", $0.formatted(.iso8601)), ("reason", item.revocationReason ?? "")]
                    } ?? [])
                for (name, value) in fields {
                    print(name.padding(toLength: 16, withPad: " ", startingAt: 0) + value)
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a certificate (its requester's credential, or an administrator's).",
            discussion:
                "Reasons: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn. Revoking twice answers the first revocation."
        )
        @OptionGroup var server: ServerOptions
        @Argument(help: "The serial number (hexadecimal).") var serial: String
        @Option(help: "The RFC 5280 reason.") var reason: String = "unspecified"

        func run() async throws {
            guard let reason = Components.Schemas.RevocationRequest.ReasonPayload(rawValue: reason) else {
                throw ValidationError(
                    "--reason must be one of \(Components.Schemas.RevocationRequest.ReasonPayload.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            try await SignetClient.with(server) { client in
                let item = try await client.revoke(serial: serial, reason: reason)
                print(
                    "revoked \(item.serial) at \(item.revokedAt?.formatted(.iso8601) ?? "?") (\(item.revocationReason ?? reason.rawValue))"
                )
            }
        }
    }
}
