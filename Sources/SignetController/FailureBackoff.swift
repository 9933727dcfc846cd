import Synchronization

/// Transient failures per object, for the backoff before its next attempt: 5 s, doubling, at most five minutes. The
/// table is bounded: past 10,000 objects failing at once it starts over, which only shortens some waits.
final class FailureBackoff: Sendable {
    private let failures = Mutex<[String: Int]>([:])

    /// Counts a failure; returns the attempts so far and how long to wait before the next.
    func failed(_ key: String) -> (attempts: Int, delay: Duration) {
        let attempts = failures.withLock { failures in
            if failures.count > 10_000 { failures.removeAll() }
            failures[key, default: 0] += 1
            return failures[key] ?? 1
        }
        return (attempts, .seconds(min(300, 5 << min(attempts - 1, 6))))
    }

    /// The object succeeded or was given up on.
    func forget(_ key: String) {
        _ = failures.withLock { $0.removeValue(forKey: key) }
    }
}
