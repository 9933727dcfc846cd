/// Why a certificate was revoked: the CRLReason codes of RFC 5280 §5.3.1, by number and by name.
public enum RevocationReason: Int, CaseIterable, Sendable {
    case unspecified = 0
    case keyCompromise = 1
    case caCompromise = 2
    case affiliationChanged = 3
    case superseded = 4
    case cessationOfOperation = 5
    case certificateHold = 6
    case removeFromCRL = 8
    case privilegeWithdrawn = 9
    case aaCompromise = 10

    public init?(code: Int) {
        self.init(rawValue: code)
    }

    public init?(name: String) {
        guard let found = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = found
    }

    /// The RFC 5280 name: `keyCompromise`, `superseded`, …
    public var name: String {
        switch self {
        case .unspecified: "unspecified"
        case .keyCompromise: "keyCompromise"
        case .caCompromise: "cACompromise"
        case .affiliationChanged: "affiliationChanged"
        case .superseded: "superseded"
        case .cessationOfOperation: "cessationOfOperation"
        case .certificateHold: "certificateHold"
        case .removeFromCRL: "removeFromCRL"
        case .privilegeWithdrawn: "privilegeWithdrawn"
        case .aaCompromise: "aACompromise"
        }
    }

    /// Reasons a certificate's holder may give. A CA compromise is the CA's to declare, holds are not supported
    /// (revocation is final), and removeFromCRL only undoes a hold.
    public var mayBeRequested: Bool {
        switch self {
        case .unspecified, .keyCompromise, .affiliationChanged, .superseded, .cessationOfOperation, .privilegeWithdrawn:
            true
        case .caCompromise, .certificateHold, .removeFromCRL, .aaCompromise: false
        }
    }
}
