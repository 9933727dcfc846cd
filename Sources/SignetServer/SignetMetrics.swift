import Prometheus
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetManaged

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Signet's Prometheus metrics. Counters and histograms are updated on the request path; the ledger-derived
/// gauges (certificates by status, earliest expiry) are refreshed from SQLite when /metrics is scraped.
public final class SignetMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let issued: Counter
    private let refused: Counter
    private let failed: Counter
    private let issuanceLatency: DurationHistogram
    private let signerBackend: String
    private let signerLatency: DurationHistogram
    private let signerThrottled: Counter
    private let signerQueued: Gauge
    private let signerRunning: Gauge
    private let certificatesByStatus: [CertificateStatus: Gauge]
    private let earliestExpiry: Gauge
    private let renewals: [RenewalOutcome: Counter]
    private let probes: [Bool: Counter]
    private let rateLimited: [String: Counter]
    private let crlSignatures: Counter
    private let ocspResponses: [String: Counter]
    private let ocspSignatures: Counter

    private static let latencyBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
    ]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), signerBackend: String) {
        self.registry = registry
        let issuances = MetricNameDescriptor(
            namespace: "signet", metricName: "issuances", unitName: "total",
            helpText: "Certificate requests by outcome: issued, refused (bad input or policy), failed (server side)."
        )
        issued = registry.makeCounter(descriptor: issuances, labels: [("outcome", "issued")])
        refused = registry.makeCounter(descriptor: issuances, labels: [("outcome", "refused")])
        failed = registry.makeCounter(descriptor: issuances, labels: [("outcome", "failed")])
        issuanceLatency = registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "signet", metricName: "issuance_duration", unitName: "seconds",
                helpText: "Time from a request's arrival at the issuer to its committed certificate."),
            buckets: Self.latencyBuckets
        )
        signerLatency = registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "signet", metricName: "signer_duration", unitName: "seconds",
                helpText: "Time the CA key took to make one signature."),
            labels: [("backend", signerBackend)],
            buckets: Self.latencyBuckets
        )
        self.signerBackend = signerBackend
        signerThrottled = registry.makeCounter(
            descriptor: .init(
                namespace: "signet", metricName: "signer_throttled_responses", unitName: "total",
                helpText: "429 answers from the remote signer (each one, retried or not)."),
            labels: [("backend", signerBackend)]
        )
        signerQueued = registry.makeGauge(
            descriptor: .init(
                namespace: "signet", metricName: "signer_queue_depth", unitName: "",
                helpText: "Signatures waiting for admission to the signer's rate and concurrency limits."),
            labels: [("backend", signerBackend)]
        )
        signerRunning = registry.makeGauge(
            descriptor: .init(
                namespace: "signet", metricName: "signer_in_flight", unitName: "",
                helpText: "Signatures admitted and not yet answered."),
            labels: [("backend", signerBackend)]
        )
        var byStatus: [CertificateStatus: Gauge] = [:]
        for status in CertificateStatus.allCases {
            byStatus[status] = registry.makeGauge(
                descriptor: .init(
                    namespace: "signet", metricName: "certificates", unitName: "",
                    helpText: "Certificates in the ledger by status."),
                labels: [("status", status.rawValue)]
            )
        }
        certificatesByStatus = byStatus
        earliestExpiry = registry.makeGauge(
            descriptor: .init(
                namespace: "signet", metricName: "earliest_expiry_timestamp", unitName: "seconds",
                helpText: "notAfter of the valid certificate that expires first (Unix time); 0 when there is none.")
        )
        let renewalDescriptor = MetricNameDescriptor(
            namespace: "signet", metricName: "managed_renewals", unitName: "total",
            helpText:
                "Managed-certificate renewal attempts (issue and deliver) by outcome: delivered, failed, unauthorized (the owner's credential no longer allows it)."
        )
        renewals = Dictionary(
            uniqueKeysWithValues: RenewalOutcome.allCases.map {
                ($0, registry.makeCounter(descriptor: renewalDescriptor, labels: [("outcome", $0.rawValue)]))
            })
        let probeDescriptor = MetricNameDescriptor(
            namespace: "signet", metricName: "delivery_probes", unitName: "total",
            helpText:
                "Gateway probes after a delivery by outcome: served (the new serial), stale (anything else, or no answer)."
        )
        probes = [
            true: registry.makeCounter(descriptor: probeDescriptor, labels: [("outcome", "served")]),
            false: registry.makeCounter(descriptor: probeDescriptor, labels: [("outcome", "stale")]),
        ]
        let limitedDescriptor = MetricNameDescriptor(
            namespace: "signet", metricName: "rate_limited", unitName: "total",
            helpText:
                "Requests refused with 429 by limit: issuance (per caller), authentication (failed attempts per source address), renewal (forced renewals per managed certificate)."
        )
        rateLimited = Dictionary(
            uniqueKeysWithValues: ["issuance", "authentication", "renewal"].map {
                ($0, registry.makeCounter(descriptor: limitedDescriptor, labels: [("limit", $0)]))
            })
        crlSignatures = registry.makeCounter(
            descriptor: .init(
                namespace: "signet", metricName: "crl_signatures", unitName: "total",
                helpText:
                    "CRLs signed with the CA key (each one a signature of the key's backend, Key Vault's quota included)."
            )
        )
        let ocspDescriptor = MetricNameDescriptor(
            namespace: "signet", metricName: "ocsp_responses", unitName: "total",
            helpText:
                "OCSP answers by certificate status (good, revoked, unknown) or failure status (malformedRequest, unauthorized, tryLater)."
        )
        ocspResponses = Dictionary(
            uniqueKeysWithValues: [
                "good", "revoked", "unknown", "malformedRequest", "unauthorized", "tryLater", "internalError",
            ].map {
                ($0, registry.makeCounter(descriptor: ocspDescriptor, labels: [("status", $0)]))
            })
        ocspSignatures = registry.makeCounter(
            descriptor: .init(
                namespace: "signet", metricName: "ocsp_signatures", unitName: "total",
                helpText:
                    "OCSP responses signed with the delegated responder's local key (never the CA key); cached answers are not counted."
            )
        )
    }

    func recordCRLSignature() { crlSignatures.increment() }

    /// One OCSP answer: good, revoked, unknown, or the failure status it carried.
    func recordOCSPResponse(_ outcome: String) { ocspResponses[outcome]?.increment() }
    /// One response signed with the responder's local key (a cached answer is not).
    func recordOCSPSignature() { ocspSignatures.increment() }

    func recordRateLimited(_ limit: String) { rateLimited[limit]?.increment() }

    enum RenewalOutcome: String, CaseIterable { case delivered, failed, unauthorized }

    func recordRenewal(_ outcome: RenewalOutcome) { renewals[outcome]?.increment() }
    func recordProbe(matched: Bool) { probes[matched]?.increment() }

    func recordIssued(after duration: Duration) {
        issued.increment()
        issuanceLatency.record(duration)
    }

    func recordRefused() { refused.increment() }
    func recordFailed() { failed.increment() }

    /// One signature's duration; a failure is also counted by its kind (throttled, unreachable, queue_full, …).
    public func recordSignature(seconds: Double, failure: (any Error)?) {
        signerLatency.record(.nanoseconds(Int64(seconds * 1e9)))
        if let failure {
            // The registry hands back the same counter for the same labels; failures are rare, so the lookup is cheap.
            registry.makeCounter(
                descriptor: Self.signerErrors,
                labels: [("backend", signerBackend), ("kind", SignerFailureKind.of(failure))]
            ).increment()
        }
    }

    public func recordThrottledResponse() { signerThrottled.increment() }

    public func recordRetry(reason: String) {
        registry.makeCounter(descriptor: Self.signerRetries, labels: [("backend", signerBackend), ("reason", reason)])
            .increment()
    }

    public func recordAdmission(queued: Int, running: Int) {
        signerQueued.set(Double(queued))
        signerRunning.set(Double(running))
    }

    private static var signerErrors: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "signet", metricName: "signer_errors", unitName: "total",
            helpText: "Signatures the CA key failed to make, by kind of failure."
        )
    }
    private static var signerRetries: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "signet", metricName: "signer_retries", unitName: "total",
            helpText: "Calls to the remote signer retried, by reason: throttled, server_error, transport."
        )
    }

    /// Refreshes the ledger gauges and renders the exposition text, with the managed-certificate families
    /// computed from the ledger at this moment (so a deleted one disappears at once).
    public func render(
        from ledger: any StoreHealth & ManagedCertificateStore & RevocationListStore, crlIssuer: String? = nil,
        now: Date = Date()
    ) async throws
        -> String
    {
        let summary = try await ledger.summary(now: now)
        for (status, gauge) in certificatesByStatus {
            gauge.set(Double(summary.counts[status] ?? 0))
        }
        earliestExpiry.set(summary.earliestExpiry?.timeIntervalSince1970 ?? 0)
        let managed = try await ledger.managedCertificates()
        var crl = ""
        if let crlIssuer, let latest = try await ledger.latestCRL(issuerKeyID: crlIssuer) {
            crl = """
                # HELP signet_crl_next_update_timestamp_seconds nextUpdate of the CRL served for the issuing key (Unix time): alert well before it.
                # TYPE signet_crl_next_update_timestamp_seconds gauge
                signet_crl_next_update_timestamp_seconds{issuer="\(crlIssuer)"} \(Int64(latest.nextUpdate.timeIntervalSince1970))
                # HELP signet_crl_entries Revoked certificates the CRL served for the issuing key lists.
                # TYPE signet_crl_entries gauge
                signet_crl_entries{issuer="\(crlIssuer)"} \(latest.entries)

                """
        }
        return registry.emitToString() + ManagedCertificateMetrics.render(managed, now: now) + crl
    }
}

/// The managed certificates as cert-manager's per-certificate metric families, one series each.
enum ManagedCertificateMetrics {
    static func render(_ records: [ManagedCertificateRecord], now: Date) -> String {
        CertificateMetricFamilies.render(
            records.map { record in
                CertificateMetricFamilies.Series(
                    labels: [
                        ("name", record.name), ("cluster", record.spec.target.cluster),
                        ("namespace", record.spec.target.namespace),
                        ("secret", record.spec.target.secretName),
                    ],
                    notAfter: record.delivered?.notAfter, renewalTime: record.nextAttemptAt,
                    condition: ManagedCertificateStatus(record, now: now).ready
                        ? .ready : (record.delivered == nil && record.lastError == nil ? .unknown : .notReady),
                    failedAttempts: record.attempts
                )
            }, noun: "managed certificate")
    }
}
