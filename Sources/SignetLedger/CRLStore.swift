import GRDB
import SignetAuthority

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A published CRL as the ledger keeps it.
public struct StoredCRL: Sendable, Equatable {
    public var issuerKeyID: String
    public var number: Int64
    public var thisUpdate: Date
    public var nextUpdate: Date
    public var entries: Int
    public var der: [UInt8]

    public init(issuerKeyID: String, number: Int64, thisUpdate: Date, nextUpdate: Date, entries: Int, der: [UInt8]) {
        self.issuerKeyID = issuerKeyID
        self.number = number
        self.thisUpdate = thisUpdate
        self.nextUpdate = nextUpdate
        self.entries = entries
        self.der = der
    }
}

/// A revoked certificate as a CRL lists it.
public struct RevokedCertificate: Sendable, Equatable {
    public var serial: String
    public var revokedAt: Date
    public var reason: RevocationReason

    public init(serial: String, revokedAt: Date, reason: RevocationReason) {
        self.serial = serial
        self.revokedAt = revokedAt
        self.reason = reason
    }
}

extension CertificateLedger {
    /// The revoked certificates of an issuing key a CRL must list: every one not expired before `expiredAfter` (the
    /// previous CRL's thisUpdate, so an entry leaves only after one more CRL was published past its expiry).
    public func revokedCertificates(issuerKeyID: String, expiredAfter: Date) async throws -> [RevokedCertificate] {
        try await pool.read { db in
            try Row.fetchAll(
                try db.cachedStatement(
                    sql: """
                        SELECT serial, revoked_at, revocation_reason FROM certificates
                        WHERE status = 'revoked' AND issuer_key_id = ? AND not_after > ? ORDER BY revoked_at, serial
                        """), arguments: [issuerKeyID, Int64(expiredAfter.timeIntervalSince1970)]
            ).map { row in
                RevokedCertificate(
                    serial: row["serial"],
                    revokedAt: Date(timeIntervalSince1970: TimeInterval(row["revoked_at"] as Int64)),
                    reason: (row["revocation_reason"] as String?).flatMap(RevocationReason.init(name:)) ?? .unspecified
                )
            }
        }
    }

    public func latestCRLNumber(issuerKeyID: String) async throws -> Int64? {
        try await pool.read { db in
            try Int64.fetchOne(
                try db.cachedStatement(sql: "SELECT number FROM crls WHERE issuer_key_id = ?"), arguments: [issuerKeyID]
            )
        }
    }

    public func latestCRL(issuerKeyID: String) async throws -> StoredCRL? {
        try await pool.read { db in
            try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT * FROM crls WHERE issuer_key_id = ?"), arguments: [issuerKeyID]
            ).map { row in
                StoredCRL(
                    issuerKeyID: row["issuer_key_id"], number: row["number"],
                    thisUpdate: Self.date(milliseconds: row["this_update_ms"]),
                    nextUpdate: Self.date(milliseconds: row["next_update_ms"]), entries: row["entries"],
                    der: Array(row["der"] as Data))
            }
        }
    }

    /// Keeps `crl` as the latest if its number is above the stored one; returns whether it was kept (a CRL numbered
    /// at or below one already published, by another process say, is not).
    @discardableResult
    public func storeCRL(_ crl: StoredCRL) async throws -> Bool {
        try await commitReturning { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO crls (issuer_key_id, number, this_update_ms, next_update_ms, entries, der) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (issuer_key_id) DO UPDATE SET number = excluded.number, this_update_ms = excluded.this_update_ms,
                        next_update_ms = excluded.next_update_ms, entries = excluded.entries, der = excluded.der
                    WHERE excluded.number > crls.number
                    """
            ).execute(arguments: [
                crl.issuerKeyID, crl.number, Self.milliseconds(crl.thisUpdate), Self.milliseconds(crl.nextUpdate),
                crl.entries, Data(crl.der),
            ])
            return db.changesCount == 1
        }
    }
}
