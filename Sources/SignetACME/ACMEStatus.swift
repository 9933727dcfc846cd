#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The states of RFC 8555 §7.1.6. Orders and authorizations are stored with the state their last write left; what a
/// client reads is derived from it and the clock (expiry) and, for an order, from its authorizations.
public enum ChallengeStatus: String, Sendable, Codable { case pending, processing, valid, invalid }
public enum AuthorizationStatus: String, Sendable, Codable {
    case pending, valid, invalid, deactivated, expired, revoked
}
public enum OrderStatus: String, Sendable, Codable { case pending, ready, processing, valid, invalid }
public enum AccountStatus: String, Sendable, Codable { case valid, deactivated, revoked }

public enum ACMEStateMachine {
    /// An authorization as a client sees it at `now`: pending and valid ones expire.
    public static func authorizationStatus(stored: AuthorizationStatus, expires: Date, now: Date) -> AuthorizationStatus
    {
        switch stored {
        case .pending, .valid: expires <= now ? .expired : stored
        default: stored
        }
    }

    /// An order as a client sees it at `now` (§7.1.6): `pending` until every authorization is valid, then `ready`;
    /// `invalid` once any authorization is not pending or valid, or the order expired before it was finalized.
    /// `processing`, `valid` and an `invalid` recorded at finalization are stored and final.
    public static func orderStatus(stored: OrderStatus, expires: Date, authorizations: [AuthorizationStatus], now: Date)
        -> OrderStatus
    {
        switch stored {
        case .processing, .valid, .invalid:
            return stored
        case .pending, .ready:
            if expires <= now { return .invalid }
            if authorizations.contains(where: { $0 != .pending && $0 != .valid }) { return .invalid }
            return authorizations.allSatisfy { $0 == .valid } ? .ready : .pending
        }
    }
}
