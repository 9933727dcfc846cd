#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension Duration {
    /// The duration in seconds, for `Date` arithmetic.
    public var timeInterval: TimeInterval { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// When a managed certificate is renewed, and when a failed attempt is tried again. Pure arithmetic: the random
/// parts come in as numbers in [0, 1), so callers and tests decide where randomness comes from.
public enum RenewalSchedule {
    /// Below this, clock skew and one slow API server eat the whole renewal window.
    public static let minimumRenewBefore: Int64 = 30
    /// The first retry after a failure; each further failure doubles it, up to `maximumRetryDelay`.
    public static let firstRetryDelay: Duration = .seconds(5)
    /// Long enough not to hammer a broken API server, short enough that a fixed fault is noticed within minutes.
    public static let maximumRetryDelay: Duration = .seconds(600)

    /// How long before expiry to renew: the explicit value, the percentage of the lifetime, or by default a third
    /// of it (renewal two thirds in, as cert-manager and step-ca do).
    public static func renewBefore(lifetime: Duration, seconds: Int64?, percentage: Int?) -> Duration {
        if let seconds { return .seconds(seconds) }
        let fraction = percentage.map { Double($0) / 100 } ?? 1.0 / 3
        return .seconds(Double(lifetime.components.seconds) * fraction)
    }

    /// The renewal time of a certificate valid from `notBefore` to `notAfter`, brought forward by up to a tenth of
    /// the renew-before window (`jitter` in [0, 1)). Certificates issued together then renew spread over that
    /// span: for 90-day certificates, three days, instead of all in one minute. The time never moves later than
    /// the configured point, and never before `notBefore`.
    public static func renewalTime(notBefore: Date, notAfter: Date, renewBefore: Duration, jitter: Double) -> Date {
        let window = renewBefore.timeInterval
        let point = notAfter.addingTimeInterval(-window)
        let spread = window / 10 * min(max(jitter, 0), 1)
        return max(notBefore, point.addingTimeInterval(-spread))
    }

    /// The delay before attempt `failures + 1`: 5 s, 10 s, 20 s … capped at ten minutes, each scaled by
    /// 0.8–1.2 (`jitter` in [0, 1)) so that certificates failing together do not retry in lockstep.
    public static func retryDelay(afterFailures failures: Int, jitter: Double) -> Duration {
        let exponent = min(max(failures - 1, 0), 30)
        let base = min(firstRetryDelay * (1 << exponent), maximumRetryDelay)
        return base * (0.8 + 0.4 * min(max(jitter, 0), 1))
    }
}
