import Foundation
import Prometheus
import SignetAuthority
import Synchronization

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
        let reconcile = MetricNameDescriptor(
            namespace: "signet", subsystem: "controller", metricName: "reconciles", unitName: "total",
            helpText: "Certificate reconciliations by result: success, error (requeued with backoff).")
        reconciles = [
            false: registry.makeCounter(descriptor: reconcile, labels: [("result", "success")]),
            true: registry.makeCounter(descriptor: reconcile, labels: [("result", "error")]),
        ]
        let issuance = MetricNameDescriptor(
            namespace: "signet", subsystem: "controller", metricName: "issuances", unitName: "total",
            helpText: "Certificates requested from Signet and written, by outcome: issued, failed.")
        issuances = [
            true: registry.makeCounter(descriptor: issuance, labels: [("outcome", "issued")]),
            false: registry.makeCounter(descriptor: issuance, labels: [("outcome", "failed")]),
        ]
        reconcileDuration = registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "signet", subsystem: "controller", metricName: "reconcile_duration", unitName: "seconds",
                helpText: "Time one reconciliation took, issuance included."),
            buckets: [
                .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(2.5),
                .seconds(10), .seconds(30),
            ]
        )
    }

    func recordReconcile(seconds: Double, failed: Bool) {
        reconciles[failed]?.increment()
        reconcileDuration.record(.nanoseconds(Int64(seconds * 1e9)))
    }

    func recordIssuance(succeeded: Bool) { issuances[succeeded]?.increment() }

    func observe(_ namespace: String, _ name: String, secret: String?, held: HeldCertificate?, ready: Bool) {
        certificates.withLock {
            $0["\(namespace)/\(name)"] = Observed(
                secret: secret, notAfter: held?.notAfter, renewalTime: held?.renewalTime, ready: ready)
        }
    }

    func forget(_ namespace: String, _ name: String) {
        _ = certificates.withLock { $0.removeValue(forKey: "\(namespace)/\(name)") }
    }

    public func render() -> String {
        let series = certificates.withLock { $0 }.sorted { $0.key < $1.key }.map { key, observed in
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            return CertificateMetricFamilies.Series(
                labels: [("name", parts[1]), ("namespace", parts[0]), ("secret", observed.secret ?? "")],
                notAfter: observed.notAfter, renewalTime: observed.renewalTime,
                condition: observed.ready ? .ready : .notReady
            )
        }
        return registry.emitToString() + CertificateMetricFamilies.render(series, noun: "Certificate")
    }
}
