import GRDB
import SignetACME
import SignetAuthority

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// An External Account Binding key as the ledger keeps it (the MAC key itself only sealed).
public struct ACMEExternalKey: Sendable, Equatable {
    public var keyID: String
    public var directory: String
    public var label: String
    /// Name patterns accounts bound with this key may order; empty: whatever the directory allows.
    public var allowedNames: [String]
    public var createdAt: Date
    public var revokedAt: Date?

    public init(
        keyID: String, directory: String, label: String, allowedNames: [String], createdAt: Date, revokedAt: Date? = nil
    ) {
        self.keyID = keyID
        self.directory = directory
        self.label = label
        self.allowedNames = allowedNames
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

public struct ACMEAccount: Sendable, Equatable {
    public var id: String
    public var directory: String
    public var thumbprint: String
    /// The account key as its JWK JSON text.
    public var jwk: String
    public var status: AccountStatus
    public var contact: [String]
    public var externalKeyID: String?
    public var createdAt: Date
    /// Filled when read: the bound EAB key's label and name patterns.
    public var label: String?
    public var allowedNames: [String] = []
    /// The bound EAB key was revoked: the account may no longer order.
    public var externalKeyRevoked = false

    public init(
        id: String, directory: String, thumbprint: String, jwk: String, status: AccountStatus, contact: [String],
        externalKeyID: String?, createdAt: Date
    ) {
        self.id = id
        self.directory = directory
        self.thumbprint = thumbprint
        self.jwk = jwk
        self.status = status
        self.contact = contact
        self.externalKeyID = externalKeyID
        self.createdAt = createdAt
    }

    /// How the ledger records this account as a certificate's requester: `acme:DIRECTORY/LABEL/ID`, or
    /// `acme:DIRECTORY/ID` for an account with no external binding.
    public var requester: String {
        if let label { "acme:\(directory)/\(label)/\(id)" } else { "acme:\(directory)/\(id)" }
    }
}

/// A problem recorded on a challenge, an authorization or an order.
public struct ACMEStoredProblem: Sendable, Equatable, Codable {
    public var type: String
    public var detail: String

    public init(_ error: ACMEError) {
        type = error.type
        detail = error.detail
    }

    public var json: [String: Any] { ["type": type, "detail": detail, "status": 400] }
}

public struct ACMEChallenge: Sendable, Equatable, Codable {
    public var type: ChallengeType
    public var token: String
    public var status: ChallengeStatus
    public var validated: Date?
    public var error: ACMEStoredProblem?

    public init(
        type: ChallengeType, token: String, status: ChallengeStatus = .pending, validated: Date? = nil,
        error: ACMEStoredProblem? = nil
    ) {
        self.type = type
        self.token = token
        self.status = status
        self.validated = validated
        self.error = error
    }
}

public struct ACMEAuthorization: Sendable, Equatable {
    public var id: String
    public var accountID: String
    public var identifier: ACMEIdentifier
    public var wildcard: Bool
    /// As stored; `ACMEStateMachine.authorizationStatus` gives what a client sees.
    public var status: AuthorizationStatus
    public var expires: Date
    /// Valid without a challenge: the identifier matched one of the directory's trusted name patterns.
    public var trusted: Bool
    public var challenges: [ACMEChallenge]

    public init(
        id: String, accountID: String, identifier: ACMEIdentifier, wildcard: Bool, status: AuthorizationStatus,
        expires: Date, trusted: Bool, challenges: [ACMEChallenge]
    ) {
        self.id = id
        self.accountID = accountID
        self.identifier = identifier
        self.wildcard = wildcard
        self.status = status
        self.expires = expires
        self.trusted = trusted
        self.challenges = challenges
    }
}

public struct ACMEOrder: Sendable, Equatable {
    public var id: String
    public var accountID: String
    /// As stored; `ACMEStateMachine.orderStatus` gives what a client sees.
    public var status: OrderStatus
    public var identifiers: [ACMEIdentifier]
    public var authorizationIDs: [String]
    public var notBefore: Date?
    public var notAfter: Date?
    public var profile: String?
    /// The ARI certificate identifier of the certificate this order replaces (RFC 9773 §5).
    public var replaces: String?
    public var expires: Date
    public var certificateSerial: String?
    public var error: ACMEStoredProblem?
    public var createdAt: Date

    public init(
        id: String, accountID: String, status: OrderStatus, identifiers: [ACMEIdentifier], authorizationIDs: [String],
        notBefore: Date?,
        notAfter: Date?, profile: String?, replaces: String?, expires: Date, createdAt: Date
    ) {
        self.id = id
        self.accountID = accountID
        self.status = status
        self.identifiers = identifiers
        self.authorizationIDs = authorizationIDs
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.profile = profile
        self.replaces = replaces
        self.expires = expires
        self.createdAt = createdAt
    }
}

/// Writes a front end asks the ledger to make in the same transaction as an issuance (the order that the certificate
/// completes), so that neither is ever recorded without the other. A value, not a closure over one database's
/// connection: each backend applies it in its own transaction.
public enum LedgerWrite: Sendable, Equatable {
    /// The ACME order whose certificate this is goes from `processing` to `valid`, naming the certificate; recording
    /// fails if the order is not processing.
    case completeOrder(orderID: String, serial: String)
}

/// The JSON inside the ACME tables (challenges, identifiers, stored problems), spelled once for every backend: times
/// as Unix milliseconds, like the ledger's integer columns, so a row moves between backends unchanged.
public enum ACMEJSON {
    public static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public static func decode<Value: Decodable>(_ type: Value.Type, from text: String) throws -> Value {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return try decoder.decode(type, from: Data(text.utf8))
    }
}
