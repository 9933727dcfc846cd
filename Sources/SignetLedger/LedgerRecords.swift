import SignetAuthority

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One issued certificate as the ledger keeps it.
public struct CertificateEntry: Sendable, Equatable {
    public enum StoredStatus: String, Sendable {
        case valid, revoked
    }

    public var serial: String
    public var issuerKeyID: String
    public var subject: String
    public var dnsNames: [String]
    public var ipAddresses: [String]
    /// URI names (SPIFFE IDs), set after initialization by the rare issuance that has them.
    public var uris: [String] = []
    public var publicKeySHA256: String
    public var csrSHA256: String
    public var profile: CertificateProfile
    public var notBefore: Date
    public var notAfter: Date
    public var storedStatus: StoredStatus
    public var revokedAt: Date?
    public var revocationReason: String?
    public var requester: String
    public var issuedAt: Date
    public var der: [UInt8]
    /// The remote signer's key version and request id for this signature (nil for file keys).
    public var signerKeyVersion: String?
    public var signerRequestID: String?

    public init(
        serial: String, issuerKeyID: String, subject: String, dnsNames: [String], ipAddresses: [String],
        publicKeySHA256: String, csrSHA256: String, profile: CertificateProfile, notBefore: Date, notAfter: Date,
        requester: String, issuedAt: Date, der: [UInt8]
    ) {
        self.serial = serial
        self.issuerKeyID = issuerKeyID
        self.subject = subject
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.publicKeySHA256 = publicKeySHA256
        self.csrSHA256 = csrSHA256
        self.profile = profile
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.storedStatus = .valid
        self.requester = requester
        self.issuedAt = issuedAt
        self.der = der
    }

    /// Expiry is not stored: it follows from the clock, so it can never be stale.
    public func status(at now: Date) -> CertificateStatus {
        if storedStatus == .revoked { return .revoked }
        return notAfter < now ? .expired : .valid
    }
}

public enum CertificateStatus: String, Sendable, CaseIterable {
    case valid, expired, revoked
}

/// An API token as stored: never the token itself, only its SHA-256.
public struct TokenEntry: Sendable, Equatable {
    public var name: String
    public var secretSHA256: String
    public var allowedNames: [String]
    public var allowedProfiles: [CertificateProfile]
    public var maximumLifetime: Duration
    public var createdAt: Date
    public var revokedAt: Date?
    /// `cluster/namespace/secret` patterns this token may deliver managed certificates to.
    public var allowedTargets: [String]
    /// An auditor's token reads every tenant's certificates and managed certificates; others read their own.
    public var auditor: Bool
    /// An administrator's token may revoke any tenant's certificate; others revoke what they were issued.
    public var administrator: Bool

    public init(
        name: String, secretSHA256: String, allowedNames: [String], allowedProfiles: [CertificateProfile],
        maximumLifetime: Duration,
        createdAt: Date, revokedAt: Date? = nil, allowedTargets: [String] = [], auditor: Bool = false,
        administrator: Bool = false
    ) {
        self.auditor = auditor
        self.administrator = administrator
        self.allowedTargets = allowedTargets
        self.name = name
        self.secretSHA256 = secretSHA256
        self.allowedNames = allowedNames
        self.allowedProfiles = allowedProfiles
        self.maximumLifetime = maximumLifetime
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// Who did what, and why it was refused if it was: one row per issuance and per refused request.
public struct AuditEvent: Sendable, Equatable {
    public enum Outcome: String, Sendable {
        case success, refused, failed
    }

    public var at: Date
    public var actor: String
    public var action: String
    public var outcome: Outcome
    public var subject: String?
    public var names: [String]
    public var reason: String?

    public init(
        at: Date, actor: String, action: String, outcome: Outcome, subject: String? = nil, names: [String] = [],
        reason: String? = nil
    ) {
        self.at = at
        self.actor = actor
        self.action = action
        self.outcome = outcome
        self.subject = subject
        self.names = names
        self.reason = reason
    }
}

/// The auditor's query: every field narrows the result; all nil lists everything, newest first.
public struct CertificateQuery: Sendable, Equatable {
    public var dnsName: String?
    public var status: CertificateStatus?
    public var expiringBefore: Date?
    public var issuedAfter: Date?
    public var issuedBefore: Date?
    public var requester: String?
    /// Certificates for one public key (SHA-256 of its SubjectPublicKeyInfo, hex): how a client that lost an
    /// answer finds the certificate it was issued.
    public var publicKeySHA256: String?
    public var limit: Int = 100
    /// Opaque position from the previous page.
    public var cursor: String?

    public static let maximumLimit = 1000

    public init() {}

    /// The id below which the page starts, from `cursor`: exactly the form handed out (a positive decimal id, no
    /// sign or leading zero), as api/openapi.yaml states; anything else is `invalidCursor`.
    public func cursorPosition() throws(LedgerError) -> Int64? {
        guard let cursor else { return nil }
        guard (1...18).contains(cursor.utf8.count), cursor.first != "0",
            cursor.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let position = Int64(cursor)
        else { throw .invalidCursor(cursor) }
        return position
    }

    /// The page size asked for, within 1 and `maximumLimit`.
    public var boundedLimit: Int { max(1, min(limit, Self.maximumLimit)) }
}

public struct CertificatePage: Sendable {
    public var entries: [CertificateEntry]
    public var nextCursor: String?

    public init(entries: [CertificateEntry], nextCursor: String?) {
        self.entries = entries
        self.nextCursor = nextCursor
    }
}
