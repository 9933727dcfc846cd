import Synchronization

/// Token buckets by key (an identity, a source address, a managed certificate): `rate` tokens a second up to
/// `burst`. A key's bucket is forgotten once full again, so the table holds only keys that spent recently, and it
/// is bounded: past `maximumKeys`, full buckets are dropped first, then the whole table (which only forgives).
public final class RateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    let rate: Double
    let burst: Double
    private let maximumKeys: Int
    private let buckets = Mutex<[String: Bucket]>([:])

    /// `rate` ≤ 0 turns the limit off.
    public init(rate: Double, burst: Double, maximumKeys: Int = 100_000) {
        self.rate = rate
        self.burst = max(1, burst)
        self.maximumKeys = maximumKeys
    }

    var isEnabled: Bool { rate > 0 }

    /// Spends one token of `key`'s bucket; nil if there was one, else how long until there is.
    public func take(_ key: String, now: ContinuousClock.Instant = .now) -> Duration? {
        guard isEnabled else { return nil }
        return buckets.withLock { buckets in
            var bucket = refilled(buckets[key], now: now)
            guard bucket.tokens >= 1 else {
                buckets[key] = bucket
                return .seconds((1 - bucket.tokens) / rate)
            }
            bucket.tokens -= 1
            buckets[key] = bucket
            if buckets.count > maximumKeys { prune(&buckets, now: now) }
            return nil
        }
    }

    /// How long until `key` has a token again, without spending one (nil: it has one now).
    public func wait(_ key: String, now: ContinuousClock.Instant = .now) -> Duration? {
        guard isEnabled else { return nil }
        return buckets.withLock { buckets in
            let bucket = refilled(buckets[key], now: now)
            return bucket.tokens >= 1 ? nil : .seconds((1 - bucket.tokens) / rate)
        }
    }

    private func refilled(_ bucket: Bucket?, now: ContinuousClock.Instant) -> Bucket {
        guard var bucket else { return Bucket(tokens: burst, updated: now) }
        let elapsed = now - bucket.updated
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        bucket.tokens = min(burst, bucket.tokens + seconds * rate)
        bucket.updated = now
        return bucket
    }

    private func prune(_ buckets: inout [String: Bucket], now: ContinuousClock.Instant) {
        buckets = buckets.filter { refilled($0.value, now: now).tokens < burst }
        if buckets.count > maximumKeys { buckets.removeAll() }
    }
}

/// A request refused by a rate limit: 429 with `Retry-After`.
public struct RateLimited: Error, CustomStringConvertible {
    /// Which limit: `issuance`, `authentication`, `renewal`.
    public let limit: String
    public let retryAfter: Duration
    public let description: String

    var retryAfterSeconds: Int {
        max(
            1,
            Int((Double(retryAfter.components.seconds) + Double(retryAfter.components.attoseconds) / 1e18).rounded(.up))
        )
    }
}
