import Logging
import ServiceLifecycle
import SignetLedger

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Runs managed-certificate renewals as they fall due. The schedule is the ledger's `next_attempt_ms` column, not
/// memory: a restart loses nothing, and whatever fell due while Signet was down is done at once.
public struct RenewalScheduler: Service {
    let managed: ManagedCertificates
    let concurrency: Int
    let logger: Logger
    /// How often the ledger is asked for due work when there is none.
    let tick: Duration

    public init(managed: ManagedCertificates, concurrency: Int, logger: Logger, tick: Duration = .seconds(1)) {
        self.managed = managed
        self.concurrency = max(1, concurrency)
        self.logger = logger
        self.tick = tick
    }

    public func run() async {
        // Each child returns the name it renewed, or nil for a tick. In-flight names are never started twice,
        // while free slots are refilled as soon as a renewal (or its delivery probe) finishes.
        await withTaskGroup(of: String?.self) { group in
            var inFlight = Set<String>()
            var ticking = false
            while !Task.isShuttingDownGracefully, !Task.isCancelled {
                if inFlight.count < concurrency {
                    do {
                        for record in try await managed.claimDue(limit: concurrency - inFlight.count) {
                            guard !inFlight.contains(record.name) else {
                                // Due again while its previous renewal's probe still runs here: claimed after that.
                                await managed.releaseClaim(record.name)
                                continue
                            }
                            inFlight.insert(record.name)
                            group.addTask {
                                await managed.renew(record)
                                return record.name
                            }
                        }
                    } catch {
                        logger.error("cannot read due renewals from the ledger", metadata: ["error": "\(error)"])
                    }
                }
                if !ticking {
                    ticking = true
                    let tick = tick
                    group.addTask {
                        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: tick) }
                        return nil
                    }
                }
                guard let finished = await group.next() else { break }
                if let name = finished { inFlight.remove(name) } else { ticking = false }
            }
            // Renewals in flight finish (each is bounded by the Kubernetes client's timeouts); no new one starts.
        }
        logger.info("renewal scheduler stopped")
    }
}

/// What the API and the metrics say about a managed certificate, derived from its record.
struct ManagedCertificateStatus {
    let ready: Bool
    /// Issued, Pending (never delivered), Changed (the spec changed since the last delivery), Failing, Unauthorized
    /// (the owner's credential no longer allows it), Expired.
    let reason: String

    init(_ record: ManagedCertificateRecord, now: Date) {
        let failing = record.lastErrorReason ?? "Failing"
        guard let delivered = record.delivered else {
            (ready, reason) = (false, record.lastError == nil ? "Pending" : failing)
            return
        }
        if delivered.notAfter <= now {
            (ready, reason) = (false, "Expired")
        } else if delivered.generation != record.generation {
            (ready, reason) = (false, record.lastError == nil ? "Changed" : failing)
        } else {
            // A valid certificate is in place; a failing renewal shows in the reason, not in readiness.
            (ready, reason) = (true, record.lastError == nil ? "Issued" : failing)
        }
    }
}
