import SignetAuthority

/// Keys due for reconciliation: each at most once in the queue, never two workers on the same one.
actor WorkQueue<Key: Hashable & Sendable> {
    private var due: [Key: ContinuousClock.Instant] = [:]
    private var inFlight: Set<Key> = []

    /// Adds `key` (or brings it forward) to be processed after `delay`.
    func add(_ key: Key, after delay: Duration = .zero) {
        let at = ContinuousClock.now + delay
        if let existing = due[key], existing <= at { return }
        due[key] = at
    }

    func take() -> Key? {
        let now = ContinuousClock.now
        guard
            let next = due.filter({ $0.value <= now && !inFlight.contains($0.key) }).min(by: { $0.value < $1.value })?
                .key
        else { return nil }
        due[next] = nil
        inFlight.insert(next)
        return next
    }

    func done(_ key: Key) {
        inFlight.remove(key)
    }

    /// What a reconciliation asks for: to be looked at again after `after` (nil: only on the next change), and
    /// whether it failed (for the metrics).
    struct Outcome: Sendable {
        var after: Duration
        var failed = false
    }

    /// `workers` loops that take due keys and reconcile them, timing each; a key comes back when its reconciliation
    /// asks. Runs until cancelled.
    nonisolated func process(
        workers: Int, metrics: ControllerMetrics, _ reconcile: @escaping @Sendable (Key) async -> Outcome?
    ) async {
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<max(1, workers) {
                group.addTask {
                    while !Task.isCancelled {
                        guard let key = await self.take() else {
                            try? await Task.sleep(for: .milliseconds(100))
                            continue
                        }
                        let started = ContinuousClock.now
                        let again = await reconcile(key)
                        metrics.recordReconcile(
                            seconds: (ContinuousClock.now - started).timeInterval, failed: again?.failed ?? false)
                        await self.done(key)
                        if let again { await self.add(key, after: again.after) }
                    }
                }
            }
        }
    }
}
