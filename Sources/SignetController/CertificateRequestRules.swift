import Foundation
import SignetAuthority
import SignetKubernetes

/// cert-manager's external-issuer conventions for a `CertificateRequest` (cert-manager.io/v1), as pure decisions: whose
/// it is, whether it may be signed yet, and what Signet is asked for. The wire names are cert-manager's.
public enum CertificateRequestRules {
    public static let issuerGroup = "signet.dev"

    public enum IssuerKind: String, Sendable, Equatable {
        case namespaced = "SignetIssuer"
        case cluster = "SignetClusterIssuer"
    }

    public struct SigningRequest: Sendable, Equatable {
        public var issuerKind: IssuerKind
        public var issuerName: String
        public var csrPEM: String
        public var profile: CertificateProfile
        /// `spec.duration` in seconds, for Signet's `duration` (nil: the policy's default).
        public var durationSeconds: Int64?
    }

    public enum Decision: Sendable, Equatable {
        /// Another issuer's request.
        case notOurs
        /// Issued, failed or denied before: cert-manager does not expect it to change again.
        case finished
        /// Not approved yet: nothing is done until an approver sets `Approved`.
        case awaitingApproval
        /// An approver set `Denied`: the request is marked `Ready=False`, reason `Denied`, and never signed.
        case denied
        /// Malformed or asking for what Signet never issues: `Ready=False`, reason `Failed`, without asking Signet.
        case invalid(String)
        case sign(SigningRequest)
    }

    /// Key usages Signet's certificates may carry (the key usage itself follows from the key type).
    static let keyUsages: Set<String> = ["signing", "digital signature", "key encipherment", "key agreement"]

    public static func decide(_ request: KubernetesObject) -> Decision {
        let spec = request.json["spec"], status = request.json["status"] ?? .object([:])
        guard spec?["issuerRef"]?["group"]?.string == issuerGroup,
            let kind = IssuerKind(rawValue: spec?["issuerRef"]?["kind"]?.string ?? ""),
            let issuerName = spec?["issuerRef"]?["name"]?.string, !issuerName.isEmpty
        else { return .notOurs }
        if let ready = Conditions.get(status, "Ready"),
            ready["status"]?.string == "True"
                || ["Failed", "Denied"].contains(ready["reason"]?.string ?? "")
        {
            return .finished
        }
        if Conditions.get(status, "InvalidRequest")?["status"]?.string == "True" { return .finished }
        if Conditions.get(status, "Denied")?["status"]?.string == "True" { return .denied }
        guard Conditions.get(status, "Approved")?["status"]?.string == "True" else { return .awaitingApproval }
        if spec?["isCA"] == .bool(true) { return .invalid("Signet does not issue CA certificates (spec.isCA is true)") }
        guard let encoded = spec?["request"]?.string, let der = Data(base64Encoded: encoded),
            let pem = String(data: der, encoding: .utf8), pem.contains("-----BEGIN CERTIFICATE REQUEST-----")
        else {
            return .invalid("spec.request is not a base64-encoded PEM certificate signing request")
        }
        let profile: CertificateProfile
        switch Self.profile(usages: strings(spec?["usages"])) {
        case .success(let chosen): profile = chosen
        case .failure(let refusal): return .invalid(refusal.description)
        }
        var seconds: Int64?
        if let text = spec?["duration"]?.string {
            guard let parsed = goDurationSeconds(text), parsed > 0 else {
                return .invalid("spec.duration '\(text)' is not a positive duration")
            }
            seconds = parsed
        }
        return .sign(
            SigningRequest(
                issuerKind: kind, issuerName: issuerName, csrPEM: pem, profile: profile, durationSeconds: seconds))
    }

    public struct Refusal: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Signet's profile for cert-manager's usages: `server auth` and `client auth` choose it (neither: a server
    /// certificate); the key usages Signet sets anyway are accepted; anything else (CA, code or mail signing, IPsec,
    /// timestamping, OCSP) is refused.
    public static func profile(usages: [String]) -> Result<CertificateProfile, Refusal> {
        let asked = Set(usages.map { $0.lowercased() })
        let refused = asked.subtracting(keyUsages).subtracting(["server auth", "client auth"])
        guard refused.isEmpty else {
            return .failure(
                Refusal(
                    description:
                        "Signet issues TLS server and client certificates; usages \(refused.sorted().joined(separator: ", ")) are not offered"
                ))
        }
        switch (asked.contains("server auth"), asked.contains("client auth")) {
        case (true, true): return .success(.serverClient)
        case (false, true): return .success(.client)
        default: return .success(.server)
        }
    }

    /// A Go duration (`2160h0m0s`, `1h30m`, `90s`, `1.5h`), as cert-manager writes `spec.duration`, in whole seconds.
    public static func goDurationSeconds(_ text: String) -> Int64? {
        let units: [(String, Double)] = [
            ("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600),
        ]
        var rest = Substring(text), total = 0.0
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let (unit, scale) = units.filter({ rest.hasPrefix($0.0) }).max(by: { $0.0.count < $1.0.count }) else {
                return nil
            }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        guard total < Double(Int64.max) else { return nil }
        return Int64(total)
    }

    static func strings(_ value: JSONValue?) -> [String] {
        guard case .array(let items)? = value else { return [] }
        return items.compactMap(\.string)
    }
}

/// A SignetIssuer's or SignetClusterIssuer's spec, read and checked against what this controller may do. The
/// controller's service-account token goes only to the Signet it was started with (`--server`): an issuer that names
/// another URL is never Ready, so no tenant can point the controller, and its token, at a server of their choosing.
public struct IssuerSpec: Sendable, Equatable {
    public var url: String
    /// PEM certificates the issuer's author trusts for Signet (`spec.caBundle`, base64); Signet's root must be one.
    public var caBundle: String?
    /// The audience of the token the controller presents (`spec.auth.serviceAccountToken.audience`).
    public var audience: String?
    /// For a SignetClusterIssuer: the namespaces whose CertificateRequests it serves (`*`: all).
    public var namespaces: [String]

    public init(_ object: KubernetesObject) throws(CertificateSpecError) {
        let spec = object.json["spec"]
        guard let url = spec?["url"]?.string, url.hasPrefix("https://") || url.hasPrefix("http://") else {
            throw .invalid("spec.url must be Signet's http(s) URL")
        }
        self.url = url
        if let encoded = spec?["caBundle"]?.string {
            guard let data = Data(base64Encoded: encoded), let pem = String(data: data, encoding: .utf8),
                pem.contains("-----BEGIN CERTIFICATE-----")
            else {
                throw .invalid("spec.caBundle must be base64-encoded PEM certificates")
            }
            caBundle = pem
        }
        audience = spec?["auth"]?["serviceAccountToken"]?["audience"]?.string
        namespaces = CertificateRequestRules.strings(spec?["namespaces"])
    }

    /// Whether a SignetClusterIssuer with this spec serves requests of `namespace`.
    public func serves(namespace: String) -> Bool {
        namespaces.contains("*") || namespaces.contains(namespace)
    }

    /// URLs compared without a trailing slash and case-insensitively in scheme and host.
    public static func sameServer(_ one: String, _ other: String) -> Bool {
        func normal(_ url: String) -> String { (url.hasSuffix("/") ? String(url.dropLast()) : url).lowercased() }
        return normal(one) == normal(other)
    }
}
