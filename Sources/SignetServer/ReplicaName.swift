#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// This process among the replicas sharing a ledger, as leases and logs name it: the host (a pod's name) and a
/// random suffix, so a restarted process is a new holder and never mistakes an old lease for its own.
public enum ReplicaName {
    public static let current: String = {
        let host = ProcessInfo.processInfo.hostName
        let suffix = String(UInt32.random(in: 0...UInt32.max) | 0x1000_0000, radix: 16)
        return "\(host.isEmpty ? "signet" : host)-\(suffix)"
    }()
}
