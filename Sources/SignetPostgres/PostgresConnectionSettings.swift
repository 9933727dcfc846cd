import NIOSSL
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Where the PostgreSQL ledger is, from a libpq-style URL: `postgres://USER@HOST:PORT/DB?sslmode=verify-full` with
/// `sslrootcert=FILE` for the server's CA. The password is never part of the URL Signet logs or stores: it comes from
/// `password` (read by the caller from a file or an environment variable).
public struct PostgresConnectionSettings: Sendable, Equatable, CustomStringConvertible {
    /// libpq's sslmode values that Signet accepts. `require` is not one: encryption without checking whom it talks
    /// to would hand the ledger to whoever answers on the address.
    public enum TLSMode: String, Sendable, CaseIterable {
        case disable
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    public var tlsMode: TLSMode
    /// The CA that verifies the server's certificate (PEM); nil: the system's trust store.
    public var rootCertificatePath: String?
    public var password: String?
    public var maximumConnections: Int = 20

    public init(url text: String, password: String? = nil) throws(PostgresSettingsError) {
        guard let url = URLComponents(string: text), ["postgres", "postgresql"].contains(url.scheme ?? "") else {
            throw .invalid("the database URL must be postgres://USER@HOST:PORT/DATABASE")
        }
        guard let host = url.host, !host.isEmpty else { throw .invalid("the database URL names no host") }
        guard let user = url.user, !user.isEmpty else { throw .invalid("the database URL names no user") }
        guard url.password == nil else {
            throw .invalid(
                "the database URL carries a password; give it in databasePasswordFile or SIGNET_DATABASE_PASSWORD instead"
            )
        }
        let database = String(url.path.drop { $0 == "/" })
        guard !database.isEmpty else { throw .invalid("the database URL names no database") }
        self.host = host
        self.port = url.port ?? 5432
        self.user = user
        self.database = database
        self.password = password
        var mode = TLSMode.verifyFull
        for item in url.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, let parsed = TLSMode(rawValue: value) else {
                    throw .invalid(
                        "sslmode must be one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", ")), not '\(item.value ?? "")'"
                    )
                }
                mode = parsed
            case "sslrootcert": rootCertificatePath = item.value
            case "pool_max_conns":
                guard let value = item.value.flatMap(Int.init), (1...1000).contains(value) else {
                    throw .invalid("pool_max_conns must be a whole number from 1 to 1000")
                }
                maximumConnections = value
            default: throw .invalid("the database URL has an unknown parameter '\(item.name)'")
            }
        }
        self.tlsMode = mode
    }

    /// The URL without any secret, for logs and `/readyz`.
    public var description: String {
        "postgres://\(user)@\(host):\(port)/\(database)?sslmode=\(tlsMode.rawValue)"
    }

    /// The TLS Signet requires of the server, nil when `sslmode=disable`.
    func tlsConfiguration() throws -> TLSConfiguration? {
        guard tlsMode != .disable else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = tlsMode == .verifyFull ? .fullVerification : .noHostnameVerification
        if let rootCertificatePath {
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(rootCertificatePath))
        }
        return configuration
    }

    /// The pool's configuration.
    func clientConfiguration() throws -> PostgresClient.Configuration {
        PostgresClient.Configuration(
            host: host, port: port, username: user, password: password, database: database,
            tls: try tlsConfiguration().map { .require($0) } ?? .disable)
    }

    /// One connection outside the pool (the migrations run on it before the pool serves anything).
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        PostgresConnection.Configuration(
            host: host, port: port, username: user, password: password, database: database,
            tls: try tlsConfiguration().map { .require(try NIOSSLContext(configuration: $0)) } ?? .disable)
    }
}

public enum PostgresSettingsError: Error, Equatable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let why): why
        }
    }
}
