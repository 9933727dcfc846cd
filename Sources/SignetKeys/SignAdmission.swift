import SignetAuthority
import SwiftASN1
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Admission control in front of a remote signer whose quota must never be exceeded (Key Vault allows a fixed
/// number of sign operations per 10 s): at most `maximumConcurrent` signatures in flight and `ratePerSecond`
/// started per second (with a burst of `burst`). Callers beyond that wait in a bounded queue ordered by urgency
/// (smaller first: a renewal whose certificate expires soonest goes first); when the queue is full a caller is
/// refused at once with a retry hint, so a flood never becomes unbounded memory or unbounded latency.
public actor SignAdmission {
    public struct Limits: Sendable, Equatable {
        public var ratePerSecond: Double
        public var burst: Double
        public var maximumConcurrent: Int
        public var maximumQueued: Int

        public init(ratePerSecond: Double, burst: Double? = nil, maximumConcurrent: Int, maximumQueued: Int) {
            self.ratePerSecond = ratePerSecond
            self.burst = max(1, burst ?? ratePerSecond / 10)
            self.maximumConcurrent = max(1, maximumConcurrent)
            self.maximumQueued = max(0, maximumQueued)
        }
    }

    /// How urgent the current signature is; smaller is more urgent. Issuance of a new certificate has the default;
    /// a renewal sets the certificate's remaining lifetime in seconds.
    @TaskLocal public static var urgency: Double = .greatestFiniteMagnitude

    /// Told the number of waiting and running signatures whenever either changes (the queue-depth gauges).
    public typealias Observer = @Sendable (_ queued: Int, _ running: Int) -> Void

    public let limits: Limits
    private let observer: Observer?
    private var tokens: Double
    private var lastRefill = ContinuousClock.now
    private var inFlight = 0
    private var queue: [(urgency: Double, order: Int, continuation: CheckedContinuation<Void, Never>)] = []
    private var nextOrder = 0

    public init(limits: Limits, observer: Observer? = nil) {
        self.limits = limits
        self.observer = observer
        self.tokens = limits.burst
    }

    public var queued: Int { queue.count }
    public var running: Int { inFlight }

    /// Runs `work` once admitted. Throws `AdmissionRefused` without waiting when the queue is full.
    public func run<T: Sendable>(_ work: @Sendable () async throws -> T) async throws -> T {
        try await acquire()
        if Task.isCancelled {
            // The caller gave up while waiting: its turn passes on without spending a signature.
            release()
            throw CancellationError()
        }
        do {
            let result = try await work()
            release()
            return result
        } catch {
            release()
            throw error
        }
    }

    private func acquire() async throws {
        if queue.isEmpty, inFlight < limits.maximumConcurrent, takeToken() {
            inFlight += 1
            observer?(queue.count, inFlight)
            return
        }
        guard queue.count < limits.maximumQueued else {
            throw AdmissionRefused(
                retryAfterSeconds: max(1, Int((Double(queue.count) / limits.ratePerSecond).rounded(.up))))
        }
        let urgency = Self.urgency
        let order = nextOrder
        nextOrder += 1
        await withCheckedContinuation { continuation in
            let position = queue.firstIndex { ($0.urgency, $0.order) > (urgency, order) } ?? queue.endIndex
            queue.insert((urgency, order, continuation), at: position)
            pump()
            observer?(queue.count, inFlight)
        }
    }

    private func release() {
        inFlight -= 1
        pump()
        observer?(queue.count, inFlight)
    }

    /// Admits waiters while both limits allow; when only the rate stops it, sleeps until the next token and retries.
    private func pump() {
        while !queue.isEmpty, inFlight < limits.maximumConcurrent, takeToken() {
            inFlight += 1
            queue.removeFirst().continuation.resume()
        }
        if !queue.isEmpty, inFlight < limits.maximumConcurrent, !pumpScheduled {
            pumpScheduled = true
            let wait = (1 - tokens) / limits.ratePerSecond
            // One timer at a time, for the moment the next token exists; the waiters stay suspended in the queue.
            // An unstructured task because nothing else would wake the queue when the rate (not a release) is
            // what holds it; it holds the actor weakly and ends after one sleep.
            Task { [weak self] in
                try? await Task.sleep(for: .milliseconds(Int64(max(1, wait * 1000))))
                await self?.timerFired()
            }
        }
    }

    private var pumpScheduled = false

    private func timerFired() {
        pumpScheduled = false
        pump()
        observer?(queue.count, inFlight)
    }

    private func takeToken() -> Bool {
        let now = ContinuousClock.now
        let elapsed = now - lastRefill
        lastRefill = now
        tokens = min(
            limits.burst,
            tokens + (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
                * limits.ratePerSecond)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// The signer's queue is full: the request was not started and may be retried after `retryAfterSeconds`.
public struct AdmissionRefused: SignerFailure, Equatable, CustomStringConvertible {
    public let retryAfterSeconds: Int
    public var failureKind: String { "queue_full" }
    public var description: String {
        "the CA signer is at its rate limit and its queue is full; retry after \(retryAfterSeconds) s"
    }
}

/// A CA key behind admission control: every signature waits for its turn.
public struct AdmittedPrivateKey: CustodyKey {
    let inner: Certificate.PrivateKey
    let admission: SignAdmission

    public init(_ inner: Certificate.PrivateKey, admission: SignAdmission) {
        self.inner = inner
        self.admission = admission
    }

    public var publicKey: Certificate.PublicKey { inner.publicKey }

    public func signSynchronously(bytes: some DataProtocol, signatureAlgorithm: Certificate.SignatureAlgorithm) throws
        -> Certificate.Signature
    {
        try inner.sign(bytes: bytes, signatureAlgorithm: signatureAlgorithm)
    }

    public func signAsynchronously(
        bytes: some DataProtocol & Sendable, signatureAlgorithm: Certificate.SignatureAlgorithm
    ) async throws -> Certificate.Signature {
        let inner = self.inner
        return try await admission.run {
            try await inner.signAsynchronously(bytes: bytes, signatureAlgorithm: signatureAlgorithm)
        }
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.inner == rhs.inner }
    public func hash(into hasher: inout Hasher) { hasher.combine(inner) }
}
