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

/// A configuration file as read: each setting's value by key (raw text, as written), and the sections that are
/// lists of entries (or an entry with a list), decoded whole.
struct ConfigurationFile: Decodable {
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
        var directories: [Directory]?
    }
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

    var clientCertificates: [ClientCertificate]?
    var clusters: [Cluster]?
    var acme: ACME?
    var serviceAccounts: ServiceAccounts?

    /// Every other setting's value, by its key in `ConfigurationReference.settings`.
    var values: [String: ConfigurationValue] = [:]

    enum CodingKeys: String, CodingKey {
        case clientCertificates, clusters, acme, serviceAccounts
    }

    /// Reads a file's text: unknown keys are errors, every setting the table applies is taken as written.
    static func read(_ text: String) throws -> ConfigurationFile {
        try rejectUnknownKeys(in: text)
        var file = try YAMLDecoder().decode(ConfigurationFile.self, from: text)
        guard let root = try Yams.compose(yaml: text) else { return file }
        for setting in ConfigurationReference.settings where setting.apply != nil {
            var node: Node? = root
            for part in setting.key.split(separator: ".") { node = node?.mapping?[Node(String(part))] }
            guard let node else { continue }
            switch node {
            case .scalar(let scalar):
                file.values[setting.key] = ConfigurationValue(shape: .scalar(scalar.string), source: setting.key)
            case .sequence(let items):
                file.values[setting.key] = ConfigurationValue(
                    shape: .list(items.compactMap(\.scalar?.string)), source: setting.key)
            default:
                throw ConfigurationError("\(setting.key) takes a value, not a mapping")
            }
        }
        return file
    }

    /// The keys a file may have, from the one table of settings. Decoding ignores unknown keys, so they are checked
    /// here: a misspelt setting is an error, never silently the default.
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
