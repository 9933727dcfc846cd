import Foundation
import SignetKeys
import SignetServer
import Testing

@Suite("admission control in front of a remote signer")
struct SignAdmissionTests {
    @Test("never more signatures in flight than the concurrency limit")
    func concurrency() async throws {
        let admission = SignAdmission(
            limits: .init(ratePerSecond: 10_000, burst: 10_000, maximumConcurrent: 2, maximumQueued: 100))
        let peak = Shared((now: 0, peak: 0))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<12 {
                group.addTask {
                    try await admission.run {
                        peak.withLock {
                            $0.now += 1
                            $0.peak = max($0.peak, $0.now)
                        }
                        try await Task.sleep(for: .milliseconds(20))
                        peak.withLock { $0.now -= 1 }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(peak.value.peak == 2)
    }

    @Test("starts no more than the rate allows after the burst")
    func rate() async throws {
        let admission = SignAdmission(
            limits: .init(ratePerSecond: 50, burst: 5, maximumConcurrent: 50, maximumQueued: 100))
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<25 { group.addTask { try await admission.run {} } }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - started
        // 5 at once, then 20 at 50/s: at least 0.4 s.
        #expect(elapsed >= .milliseconds(380), "\(elapsed)")
    }

    @Test("a full queue refuses at once with a retry hint")
    func boundedQueue() async throws {
        let admission = SignAdmission(
            limits: .init(ratePerSecond: 1000, burst: 1000, maximumConcurrent: 1, maximumQueued: 2))
        let (gate, open) = AsyncStream<Void>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await admission.run { for await _ in gate { break } } }
            while await admission.running < 1 { try await Task.sleep(for: .milliseconds(5)) }
            for _ in 0..<2 { group.addTask { try await admission.run {} } }
            while await admission.queued < 2 { try await Task.sleep(for: .milliseconds(5)) }
            for _ in 0..<3 {
                await #expect(throws: AdmissionRefused.self) { try await admission.run {} }
            }
            open.yield()
            open.finish()
            try await group.waitForAll()
        }
        let queued = await admission.queued
        let running = await admission.running
        #expect(queued == 0 && running == 0)
    }

    @Test("waiters are admitted most urgent first")
    func urgencyOrder() async throws {
        let admission = SignAdmission(
            limits: .init(ratePerSecond: 1000, burst: 1000, maximumConcurrent: 1, maximumQueued: 10))
        let order = Shared<[Double]>([])
        let (gate, open) = AsyncStream<Void>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The only slot is held until every waiter has queued, so the admission order is the queue's order.
            group.addTask { try await admission.run { for await _ in gate { break } } }
            while await admission.running < 1 { try await Task.sleep(for: .milliseconds(5)) }
            for urgency in [500.0, 10, 300, 20] {
                group.addTask {
                    try await SignAdmission.$urgency.withValue(urgency) {
                        try await admission.run { order.withLock { $0.append(urgency) } }
                    }
                }
            }
            while await admission.queued < 4 { try await Task.sleep(for: .milliseconds(5)) }
            open.yield()
            open.finish()
            try await group.waitForAll()
        }
        #expect(order.value == [10, 20, 300, 500])
    }

    @Test("a caller that gives up while waiting never spends a signature, and its turn passes on")
    func cancelledWaiter() async throws {
        let admission = SignAdmission(
            limits: .init(ratePerSecond: 1000, burst: 1000, maximumConcurrent: 1, maximumQueued: 10))
        let ran = Shared<[String]>([])
        let (gate, open) = AsyncStream<Void>.makeStream()
        let holder = Task { try await admission.run { for await _ in gate { break } } }
        while await admission.running < 1 { try await Task.sleep(for: .milliseconds(5)) }
        let abandoned = Task { try await admission.run { ran.withLock { $0.append("abandoned") } } }
        while await admission.queued < 1 { try await Task.sleep(for: .milliseconds(5)) }
        let patient = Task { try await admission.run { ran.withLock { $0.append("patient") } } }
        while await admission.queued < 2 { try await Task.sleep(for: .milliseconds(5)) }
        abandoned.cancel()
        open.yield()
        open.finish()
        try await holder.value
        await #expect(throws: CancellationError.self) { try await abandoned.value }
        try await patient.value
        #expect(ran.value == ["patient"])
        let running = await admission.running
        #expect(running == 0)
    }
}

/// A value several tasks update, behind a lock.
final class Shared<Value>: @unchecked Sendable {
    // @unchecked: `value` is only touched under `lock`.
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    func withLock(_ body: (inout Value) -> Void) { lock.withLock { body(&stored) } }
    var value: Value { lock.withLock { stored } }
}

/// The guards in front of unauthenticated and per-caller work.
@Suite("recent results and rate limits")
struct RequestGuardTests {
    final class Counter: @unchecked Sendable {
        // @unchecked: guarded by the lock.
        private let lock = NSLock()
        private var count = 0
        func increment() { lock.withLock { count += 1 } }
        var value: Int { lock.withLock { count } }
    }

    @Test("a flood of callers shares one computation per period")
    func recentResult() async throws {
        let calls = Counter()
        let recent = RecentResult<Int>(lifetime: .milliseconds(300)) {
            calls.increment()
            try? await Task.sleep(for: .milliseconds(50))
            return 42
        }
        await withTaskGroup(of: Int.self) { group in
            for _ in 0..<200 { group.addTask { await recent.value() } }
            for await value in group { #expect(value == 42) }
        }
        #expect(calls.value == 1)
        try await Task.sleep(for: .milliseconds(400))
        _ = await recent.value()
        #expect(calls.value == 2, "computed again once the result is older than the period")
    }

    @Test("token buckets: a burst, then one per 1/rate; keys are independent; rate 0 is off")
    func rateLimiter() {
        let limiter = RateLimiter(rate: 2, burst: 3)
        let start = ContinuousClock.now
        for _ in 0..<3 { #expect(limiter.take("a", now: start) == nil) }
        let wait = limiter.take("a", now: start)
        #expect(
            wait != nil && wait! <= .milliseconds(501) && wait! >= .milliseconds(499), "\(String(describing: wait))")
        #expect(limiter.take("b", now: start) == nil)
        #expect(limiter.wait("a", now: start + .milliseconds(500)) == nil)
        #expect(limiter.take("a", now: start + .milliseconds(500)) == nil)
        #expect(limiter.take("a", now: start + .milliseconds(500)) != nil)
        let off = RateLimiter(rate: 0, burst: 1)
        for _ in 0..<100 { #expect(off.take("a") == nil) }
    }
}
