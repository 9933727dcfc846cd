import SignetACME
import SignetAuthority
import SignetKeys
import SignetKubernetes
import SignetLedger
import Yams

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Bounds on what callers can make the server do (`limits` / SIGNET_LIMIT_*). A rate of 0 turns that limit off.
public struct RequestLimits: Sendable, Equatable {
    /// Issuances per second for one caller identity (a token, a service account, an identity), and the burst
    /// it may spend at once: a token bucket. Past it: 429 with Retry-After.
    public var issuancesPerSecond: Double = 100
    public var issuanceBurst: Double = 1_000
    /// Failed authentications one source address may make a minute (the burst is the same number); past it, every
    /// request from the address gets 429 until the bucket refills, before any credential is looked at.
    public var failedAuthenticationsPerMinute: Double = 60
    /// Forced renewals (`POST …/renew`) of one managed certificate an hour (burst the same).
    public var forcedRenewalsPerHour: Double = 10
    /// `/readyz` and `/metrics` answer from results at most this old, so a flood of them costs one signer check
    /// and one ledger count per period.
    public var probeCacheSeconds: Double = 2

    public init() {}
}
