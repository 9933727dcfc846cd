import SignetACME
import SignetAuthority
import SignetKeys
import SignetKubernetes
import SignetLedger
import Yams

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Which service-account tokens Signet accepts, how it checks them, and what each namespace may be issued.
/// The ACME front end: its directories, the public URL clients reach it at, and how challenges are validated.
public struct ACMESettings: Sendable, Equatable {
    /// The URL clients use (`https://signet.example.com`): every URL Signet hands out and every JWS `url` it checks
    /// starts with it. Default: `https://` + the listen address (fine for clients on the same machine).
    public var baseURL: String?
    public var directories: [ACMEDirectoryPolicy] = []
    /// Where http-01 and tls-alpn-01 are validated: 80 and 443 as RFC 8555 and 8737 say; other ports for tests.
    public var httpPort = 80
    public var tlsPort = 443
    /// The DNS server (IPv4 `address:port`) asked for dns-01 TXT records and for the addresses of names to
    /// validate; default: the system's resolver configuration.
    public var resolver: String?
    public var validationTimeout: Duration = .seconds(10)

    public init() {}

    public func directory(named name: String) -> ACMEDirectoryPolicy? {
        directories.first { $0.name == name }
    }

    /// The directories of `acme.directories`, each checked.
    mutating func addDirectories(_ entries: [ConfigurationFile.ACME.Directory]) throws {
        for (index, entry) in entries.enumerated() {
            let key = "acme.directories[\(index)]"
            guard !entry.name.isEmpty,
                entry.name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") })
            else {
                throw ConfigurationError("\(key).name may contain letters, digits and '-' only (it is part of URLs)")
            }
            guard directory(named: entry.name) == nil else {
                throw ConfigurationError("\(key).name '\(entry.name)' is used twice")
            }
            guard !entry.allow.isEmpty else {
                throw ConfigurationError("\(key).allow lists no name pattern: its accounts could order nothing")
            }
            func patterns(_ texts: [String], _ field: String) throws -> [NamePattern] {
                try texts.map { text in
                    do { return try NamePattern(text) } catch { throw ConfigurationError("\(key).\(field): \(error)") }
                }
            }
            var policy = ACMEDirectoryPolicy(name: entry.name, allowedNames: try patterns(entry.allow, "allow"))
            if let names = entry.challenges {
                policy.challenges = try names.map { name in
                    guard let type = ChallengeType(rawValue: name) else {
                        throw ConfigurationError(
                            "\(key).challenges: '\(name)' is not one of http-01, dns-01, tls-alpn-01")
                    }
                    return type
                }
            }
            func lifetime(_ text: String?, _ field: String) throws -> Duration? {
                guard let text else { return nil }
                do { return try Lifetime.parse(text) } catch { throw ConfigurationError("\(key).\(field): \(error)") }
            }
            policy.maximumLifetime = try lifetime(entry.maxDuration, "maxDuration") ?? policy.maximumLifetime
            policy.defaultLifetime = min(
                try lifetime(entry.defaultDuration, "defaultDuration") ?? policy.maximumLifetime, policy.maximumLifetime
            )
            if let names = entry.profiles {
                policy.profiles = try names.map { name in
                    guard let profile = CertificateProfile(requested: name) else {
                        throw ConfigurationError(
                            "\(key).profiles: '\(name)' is not one of server, client, server-client")
                    }
                    return profile
                }
                guard !policy.profiles.isEmpty else { throw ConfigurationError("\(key).profiles is empty") }
            }
            policy.externalAccountRequired = entry.externalAccountRequired ?? false
            policy.trustedNames = try patterns(entry.trustedNames ?? [], "trustedNames")
            policy.alwaysValid = entry.alwaysValid ?? false
            policy.website = entry.website
            policy.termsOfService = entry.termsOfService
            policy.caaIdentities = entry.caaIdentities ?? []
            directories.append(policy)
        }
    }
}
