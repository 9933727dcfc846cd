#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// cert-manager's per-certificate metric families under Signet's prefix (expiration, renewal, readiness, and failed
/// attempts where they are counted), so existing dashboards and alerts (`expiration - time() < …`,
/// `ready_status{condition="False"} == 1`) carry over. The one renderer, for the server's managed certificates and the
/// controller's Certificates alike; label values are escaped as the exposition format requires.
public enum CertificateMetricFamilies {
    public enum Condition: String, Sendable, CaseIterable {
        case ready = "True", notReady = "False", unknown = "Unknown"
    }

    public struct Series: Sendable {
        public var labels: [(name: String, value: String)]
        public var notAfter: Date?
        public var renewalTime: Date?
        public var condition: Condition
        /// Failed renewal attempts since the last success; nil where they are not counted.
        public var failedAttempts: Int?

        public init(
            labels: [(name: String, value: String)], notAfter: Date?, renewalTime: Date?, condition: Condition,
            failedAttempts: Int? = nil
        ) {
            self.labels = labels
            self.notAfter = notAfter
            self.renewalTime = renewalTime
            self.condition = condition
            self.failedAttempts = failedAttempts
        }
    }

    /// The families for `series`; `noun` names what a series is in the help texts ("managed certificate").
    public static func render(_ series: [Series], noun: String) -> String {
        var expiration = family(
            "signet_certificate_expiration_timestamp_seconds",
            "The notAfter of the \(noun)'s current certificate (Unix time).")
        var renewal = family(
            "signet_certificate_renewal_timestamp_seconds", "When the \(noun) is next renewed (Unix time).")
        var ready = family(
            "signet_certificate_ready_status",
            "1 for the \(noun)'s readiness condition (True, False, Unknown), 0 for the others.")
        var failing = family(
            "signet_certificate_failed_attempts", "Failed renewal attempts of the \(noun) since its last success.")
        for one in series {
            let labels = one.labels.map { "\($0.name)=\"\(escape($0.value))\"" }.joined(separator: ",")
            expiration +=
                "signet_certificate_expiration_timestamp_seconds{\(labels)} \(Int64(one.notAfter?.timeIntervalSince1970 ?? 0))\n"
            renewal +=
                "signet_certificate_renewal_timestamp_seconds{\(labels)} \(Int64(one.renewalTime?.timeIntervalSince1970 ?? 0))\n"
            for condition in Condition.allCases {
                ready +=
                    "signet_certificate_ready_status{\(labels),condition=\"\(condition.rawValue)\"} \(condition == one.condition ? 1 : 0)\n"
            }
            if let attempts = one.failedAttempts {
                failing += "signet_certificate_failed_attempts{\(labels)} \(attempts)\n"
            }
        }
        return expiration + renewal + ready + (series.contains { $0.failedAttempts != nil } ? failing : "")
    }

    private static func family(_ name: String, _ help: String) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) gauge\n"
    }

    /// Backslash, double quote and line feed escaped, as the text exposition format requires of label values.
    static func escape(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
    }
}
