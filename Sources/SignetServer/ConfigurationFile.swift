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

public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The YAML shape, all keys optional.
struct ConfigurationFile: Decodable {
    struct CA: Decodable {
        var directory: String?
        var passphraseFile: String?
        var keyVault: KeyVault?
        var pkcs11: PKCS11?
    }
    struct PKCS11: Decodable {
        var module: String
        var tokenLabel: String
        var keyLabel: String?
        var keyId: String?
        var pinFile: String?
        var pinEnv: String?
        var maxSignsPerSecond: Double?
        var maxConcurrentSigns: Int?
        var maxQueuedSigns: Int?
    }
    struct KeyVault: Decodable {
        var url: String
        var keyName: String
        var keyVersion: String?
        var apiVersion: String?
        var caFile: String?
        var maxSignsPerSecond: Double?
        var maxConcurrentSigns: Int?
        var maxQueuedSigns: Int?
    }
    struct TLS: Decodable {
        var mode: ServerConfiguration.Transport?
        var certificate: String?
        var key: String?
        var hostnames: [String]?
        var clientAuth: ServerConfiguration.ClientAuthentication?
        var clientCA: String?
        var allowSelfIssuedClients: Bool?
    }
    struct Issuance: Decodable {
        var defaultDuration: String?
        var maxDuration: String?
    }
    struct ClientCertificate: Decodable {
        var commonName: String?
        var subject: String?
        var uri: String?
        var issuer: String?
        var allow: [String]
        var maxDuration: String?
        var profiles: [String]?
        var targets: [String]?
    }
    struct Cluster: Decodable {
        var name: String
        var kubeconfig: String?
        var context: String?
        var inCluster: Bool?
        var gateway: String?
        var allowPlainHTTP: Bool?
    }

    var listen: String?
    var dataDirectory: String?
    var database: String?
    var ledgerKeyFile: String?
    var durability: String?
    var ca: CA?
    var tls: TLS?
    var issuance: Issuance?
    var tokenCacheSeconds: Double?
    var clientCertificates: [ClientCertificate]?
    var clusters: [Cluster]?
    var renewalConcurrency: Int?
    var limits: Limits?
    struct Limits: Decodable {
        var issuancesPerSecond: Double?
        var issuanceBurst: Double?
        var failedAuthenticationsPerMinute: Double?
        var forcedRenewalsPerHour: Double?
        var probeCacheSeconds: Double?
    }
    var crl: CRL?
    struct CRL: Decodable {
        var validity: String?
        var baseURL: String?
        var readinessMargin: String?
        var rootCRL: String?
    }
    var ocsp: OCSP?
    struct OCSP: Decodable {
        var validity: String?
        var responderLifetime: String?
        var baseURL: String?
    }
    var acme: ACME?
    struct ACME: Decodable {
        struct Directory: Decodable {
            var name: String
            var allow: [String]
            var challenges: [String]?
            var maxDuration: String?
            var defaultDuration: String?
            var profiles: [String]?
            var externalAccountRequired: Bool?
            var trustedNames: [String]?
            var alwaysValid: Bool?
            var website: String?
            var termsOfService: String?
            var caaIdentities: [String]?
        }
        var baseURL: String?
        var httpPort: Int?
        var tlsPort: Int?
        var resolver: String?
        var validationTimeoutSeconds: Double?
        var directories: [Directory]?
    }
    var serviceAccounts: ServiceAccounts?
    struct ServiceAccounts: Decodable {
        struct Namespace: Decodable {
            var namespace: String
            var allow: [String]
            var maxDuration: String?
            var profiles: [String]?
        }
        var cluster: String
        var audience: String?
        var validation: String?
        var issuer: String?
        var controllers: [String]?
        var auditors: [String]?
        var namespaces: [Namespace]?
    }

    /// The keys each section may have. Decoding ignores unknown keys, so they are checked here: a misspelt
    /// setting is an error, never silently the default.
    /// The keys a file may have, from the one table of settings.
    static var knownKeys: [String: Set<String>] { ConfigurationReference.knownKeys }

    static func rejectUnknownKeys(in yaml: String) throws {
        guard let root = try Yams.load(yaml: yaml) as? [String: Any] else { return }
        try check(root, section: "", path: [])
        for (section, value) in root where knownKeys[section] != nil {
            let entries = (value as? [Any]) ?? [value]
            for case let entry as [String: Any] in entries {
                try check(entry, section: section, path: [section])
                for (inner, innerValue) in entry where knownKeys["\(section).\(inner)"] != nil {
                    for case let mapping as [String: Any] in (innerValue as? [Any]) ?? [innerValue] {
                        try check(mapping, section: "\(section).\(inner)", path: [section, inner])
                    }
                }
            }
        }
    }

    private static func check(_ mapping: [String: Any], section: String, path: [String]) throws {
        let known = knownKeys[section] ?? []
        if let unknown = mapping.keys.sorted().first(where: { !known.contains($0) }) {
            throw ConfigurationError(
                "unknown setting '\((path + [unknown]).joined(separator: "."))'; known here: \(known.sorted().joined(separator: ", "))"
            )
        }
    }
}
