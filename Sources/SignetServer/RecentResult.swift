/// A value computed at most once per `lifetime`, however many callers ask: concurrent callers share the one
/// computation in flight, and later ones get its result until it is `lifetime` old. What keeps a flood of
/// unauthenticated `/readyz` or `/metrics` requests from becoming a flood of Key Vault calls and ledger scans.
public actor RecentResult<Value: Sendable> {
    private let lifetime: Duration
    private let compute: @Sendable () async -> Value
    private var cached: (value: Value, at: ContinuousClock.Instant)?
    private var inFlight: Task<Value, Never>?

    public init(lifetime: Duration, compute: @escaping @Sendable () async -> Value) {
        self.lifetime = lifetime
        self.compute = compute
    }

    public func value() async -> Value {
        let now = ContinuousClock.now
        if let cached, now - cached.at < lifetime { return cached.value }
        if let inFlight { return await inFlight.value }
        let task = Task { await compute() }
        inFlight = task
        let value = await task.value
        cached = (value, ContinuousClock.now)
        inFlight = nil
        return value
    }
}
