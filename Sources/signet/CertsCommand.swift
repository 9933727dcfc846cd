import ArgumentParser
import Foundation
import NIOHTTP1
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
            try await APIClient.with(server) { client in
                var cursor: String?
                repeat {
                    var query = URLComponents()
                    query.queryItems = [
                        dns.map { URLQueryItem(name: "dnsName", value: $0) },
                        status.map { URLQueryItem(name: "status", value: $0) },
                        requester.map { URLQueryItem(name: "requester", value: $0) },
                        expiringBefore.map { URLQueryItem(name: "expiringBefore", value: $0) },
                        URLQueryItem(name: "limit", value: String(min(1000, limit - items.count))),
                        cursor.map { URLQueryItem(name: "cursor", value: $0) },
                    ].compactMap { $0 }
                    let page = try client.decode(Components.Schemas.CertificatePage.self, from: try await client.send(.GET, "/v1/certificates" + (query.string ?? "")))
                    items += page.items
                    cursor = page.nextCursor
                } while cursor != nil && items.count < limit
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
                    [item.serial, item.status.rawValue, item.notAfter.formatted(.iso8601), item.profile.rawValue, item.requester,
                     (item.dnsNames + item.ipAddresses).joined(separator: ",")]
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
            try await APIClient.with(server) { client in
                if pem {
                    print(String(decoding: try await client.send(.GET, "/v1/certificates/\(serial)", accept: "application/pem-certificate-chain"), as: UTF8.self), terminator: "")
                    return
                }
                let data = try await client.send(.GET, "/v1/certificates/\(serial)")
                if json {
                    print(String(decoding: data, as: UTF8.self))
                    return
                }
                let item = try client.decode(Components.Schemas.CertificateRecord.self, from: data)
                let fields: [(String, String)] = [
                    ("serial", item.serial), ("status", item.status.rawValue), ("subject", item.subject),
                    ("dnsNames", item.dnsNames.joined(separator: ", ")), ("ipAddresses", item.ipAddresses.joined(separator: ", ")),
                    ("profile", item.profile.rawValue), ("notBefore", item.notBefore.formatted(.iso8601)),
                    ("notAfter", item.notAfter.formatted(.iso8601)), ("issuedAt", item.issuedAt.formatted(.iso8601)),
                    ("requester", item.requester), ("issuerKeyId", item.issuerKeyId),
                    ("publicKeySHA256", item.publicKeySHA256), ("csrSHA256", item.csrSHA256),
                ] + (item.revokedAt.map { [("revokedAt", $0.formatted(.iso8601)), ("reason", item.revocationReason ?? "")] } ?? [])
                for (name, value) in fields {
                    print(name.padding(toLength: 16, withPad: " ", startingAt: 0) + value)
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a certificate (its requester's credential, or an administrator's).",
            discussion: "Reasons: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn. Revoking twice answers the first revocation."
        )
        @OptionGroup var server: ServerOptions
        @Argument(help: "The serial number (hexadecimal).") var serial: String
        @Option(help: "The RFC 5280 reason.") var reason: String = "unspecified"

        func run() async throws {
            guard let reason = Components.Schemas.RevocationRequest.ReasonPayload(rawValue: reason) else {
                throw ValidationError("--reason must be one of \(Components.Schemas.RevocationRequest.ReasonPayload.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            try await APIClient.with(server) { client in
                let body = try JSONEncoder().encode(Components.Schemas.RevocationRequest(reason: reason))
                let item = try client.decode(Components.Schemas.CertificateRecord.self, from: try await client.send(.POST, "/v1/certificates/\(serial)/revoke", json: body))
                print("revoked \(item.serial) at \(item.revokedAt?.formatted(.iso8601) ?? "?") (\(item.revocationReason ?? reason.rawValue))")
            }
        }
    }
}
