import Crypto
import Foundation
import SignetAuthority
import SignetKeys
import SignetKubernetes

/// A `certificates.signet.dev` object's spec, read and checked. The wire names are cert-manager's.
public struct CertificateSpec: Sendable, Equatable {
    public enum RotationPolicy: String, Sendable { case always = "Always", never = "Never" }

    public var secretName: String
    public var dnsNames: [String]
    public var ipAddresses: [String]
    public var duration: String?
    public var renewBefore: Duration?
    public var renewBeforePercentage: Int?
    public var profile: CertificateProfile
    public var keyAlgorithm: KeyAlgorithm
    public var rotationPolicy: RotationPolicy
    public var labels: [String: String]
    public var annotations: [String: String]
    public var issuerName: String
    /// `spec.caCRL`: whether the Secret carries `ca.crl`, the chain's CRLs; nil leaves it to the profile.
    public var caCRL: Bool?

    /// A certificate that authenticates clients is one a MUTUAL gateway may have to refuse once revoked, so its Secret
    /// carries `ca.crl` unless told otherwise; a server certificate's only when asked.
    public var deliversCRL: Bool { caCRL ?? (profile != .server) }

    /// Reads the spec; every problem is named, for the Certificate's Ready condition.
    public init(_ object: KubernetesObject) throws(CertificateSpecError) {
        guard let spec = object.json["spec"] else { throw .invalid("spec is missing") }
        guard let secretName = spec["secretName"]?.string, KubernetesNames.isSubdomain(secretName) else {
            throw .invalid("spec.secretName is missing or not a valid Secret name")
        }
        self.secretName = secretName
        dnsNames = Self.strings(spec["dnsNames"])
        ipAddresses = Self.strings(spec["ipAddresses"])
        guard !dnsNames.isEmpty || !ipAddresses.isEmpty else {
            throw .invalid("spec.dnsNames or spec.ipAddresses must name something")
        }
        duration = spec["duration"]?.string
        if let text = spec["duration"]?.string {
            do { _ = try Lifetime.parse(text) } catch { throw .invalid("spec.duration: \(error)") }
        }
        if let text = spec["renewBefore"]?.string {
            do { renewBefore = try Lifetime.parse(text) } catch { throw .invalid("spec.renewBefore: \(error)") }
        }
        renewBeforePercentage = spec["renewBeforePercentage"]?.number.map { Int($0) }
        guard renewBefore == nil || renewBeforePercentage == nil else {
            throw .invalid("spec.renewBefore and spec.renewBeforePercentage are mutually exclusive")
        }
        if let percentage = renewBeforePercentage, !(1...99).contains(percentage) {
            throw .invalid("spec.renewBeforePercentage must be between 1 and 99")
        }
        let profileText = spec["profile"]?.string ?? "server"
        guard let profile = CertificateProfile(requested: profileText) else {
            throw .invalid("spec.profile '\(profileText)' is not server, client or server-client")
        }
        self.profile = profile
        let key = spec["privateKey"]
        let algorithm = key?["algorithm"]?.string ?? "ECDSA"
        let size = key?["size"]?.number.map { Int($0) }
        guard let chosen = KeyAlgorithm(algorithm: algorithm, size: size) else {
            throw .invalid(
                "spec.privateKey \(algorithm) size \(size.map(String.init) ?? "-") is not offered; use \(KeyAlgorithm.offeredKeys)"
            )
        }
        keyAlgorithm = chosen
        let rotation = key?["rotationPolicy"]?.string ?? "Always"
        guard let policy = RotationPolicy(rawValue: rotation) else {
            throw .invalid("spec.privateKey.rotationPolicy '\(rotation)' is not Always or Never")
        }
        rotationPolicy = policy
        labels = spec["secretTemplate"]?["labels"]?.stringMap ?? [:]
        annotations = spec["secretTemplate"]?["annotations"]?.stringMap ?? [:]
        issuerName = spec["issuerRef"]?["name"]?.string ?? "signet"
        switch spec["caCRL"] {
        case nil, .null?: caCRL = nil
        case .bool(let value)?: caCRL = value
        default: throw .invalid("spec.caCRL must be true or false")
        }
    }

    private static func strings(_ value: JSONValue?) -> [String] {
        guard case .array(let items)? = value else { return [] }
        return items.compactMap(\.string)
    }

    /// What the certificate must be, as a fingerprint: a change here (names, key, profile, lifetime) means a new
    /// certificate; anything else (labels, renewal timing) does not.
    public var issuanceHash: String {
        let canonical = [
            dnsNames.map { $0.lowercased() }.sorted().joined(separator: ","),
            ipAddresses.sorted().joined(separator: ","),
            profile.rawValue, keyAlgorithm.rawValue, duration ?? "",
        ].joined(separator: "|")
        return Array(SHA256.hash(data: Array(canonical.utf8))).prefix(8).map { String(format: "%02x", $0) }.joined()
    }
}

public enum CertificateSpecError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self {
        case .invalid(let what): what
        }
    }
}
