import Prometheus
import Synchronization

import Foundation

/// The controller's Prometheus metrics: reconciles and issuances as counters and a histogram, and per Certificate
/// the families cert-manager exposes (expiration, renewal, readiness), so the same alerts work.
public final class ControllerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let reconciles: [Bool: Counter]
    private let issuances: [Bool: Counter]
    private let reconcileDuration: DurationHistogram
    private struct Observed {
        var secret: String?
        var notAfter: Date?
        var renewalTime: Date?
        var ready: Bool
    }
    private let certificates = Mutex<[String: Observed]>([:])

    public init() {
        let reconcile = MetricNameDescriptor(namespace: "signet", subsystem: "controller", metricName: "reconciles", unitName: "total",
                                             helpText: "Certificate reconciliations by result: success, error (requeued with backoff).")
        reconciles = [false: registry.makeCounter(descriptor: reconcile, labels: [("result", "success")]),
                      true: registry.makeCounter(descriptor: reconcile, labels: [("result", "error")])]
        let issuance = MetricNameDescriptor(namespace: "signet", subsystem: "controller", metricName: "issuances", unitName: "total",
                                            helpText: "Certificates requested from Signet and written, by outcome: issued, failed.")
        issuances = [true: registry.makeCounter(descriptor: issuance, labels: [("outcome", "issued")]),
                     false: registry.makeCounter(descriptor: issuance, labels: [("outcome", "failed")])]
        reconcileDuration = registry.makeDurationHistogram(
            descriptor: .init(namespace: "signet", subsystem: "controller", metricName: "reconcile_duration", unitName: "seconds",
                              helpText: "Time one reconciliation took, issuance included."),
            buckets: [.milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(2.5), .seconds(10), .seconds(30)]
        )
    }

    func recordReconcile(seconds: Double, failed: Bool) {
        reconciles[failed]?.increment()
        reconcileDuration.record(.nanoseconds(Int64(seconds * 1e9)))
    }

    func recordIssuance(succeeded: Bool) { issuances[succeeded]?.increment() }

    func observe(_ namespace: String, _ name: String, secret: String?, held: HeldCertificate?, ready: Bool) {
        certificates.withLock { $0["\(namespace)/\(name)"] = Observed(secret: secret, notAfter: held?.notAfter, renewalTime: held?.renewalTime, ready: ready) }
    }

    func forget(_ namespace: String, _ name: String) {
        _ = certificates.withLock { $0.removeValue(forKey: "\(namespace)/\(name)") }
    }

    public func render() -> String {
        var expiration = "# HELP signet_certificate_expiration_timestamp_seconds The notAfter of the Certificate's current certificate (Unix time).\n# TYPE signet_certificate_expiration_timestamp_seconds gauge\n"
        var renewal = "# HELP signet_certificate_renewal_timestamp_seconds When the Certificate is renewed (Unix time).\n# TYPE signet_certificate_renewal_timestamp_seconds gauge\n"
        var ready = "# HELP signet_certificate_ready_status The Certificate's Ready condition: 1 for the current value (True, False, Unknown).\n# TYPE signet_certificate_ready_status gauge\n"
        for (key, observed) in certificates.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            let labels = "name=\"\(parts[1])\",namespace=\"\(parts[0])\",secret=\"\(observed.secret ?? "")\""
            expiration += "signet_certificate_expiration_timestamp_seconds{\(labels)} \(Int64(observed.notAfter?.timeIntervalSince1970 ?? 0))\n"
            renewal += "signet_certificate_renewal_timestamp_seconds{\(labels)} \(Int64(observed.renewalTime?.timeIntervalSince1970 ?? 0))\n"
            for condition in ["True", "False", "Unknown"] {
                ready += "signet_certificate_ready_status{\(labels),condition=\"\(condition)\"} \((condition == "True") == observed.ready && condition != "Unknown" ? 1 : 0)\n"
            }
        }
        return registry.emitToString() + expiration + renewal + ready
    }
}
