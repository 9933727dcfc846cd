import GRDB
import SignetAuthority

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What asking to revoke a certificate came to.
public enum RevocationOutcome: Sendable, Equatable {
    /// Revoked now; the entry as it is recorded.
    case revoked(CertificateEntry)
    /// Revoked before (its time and reason are the first revocation's).
    case alreadyRevoked(CertificateEntry)
    /// Past its notAfter: revoking it would change nothing anyone checks.
    case expired(CertificateEntry)
    case unknown
}

extension CertificateLedger {
    /// Revokes a certificate: its row gets status, time and reason in the same transaction as its audit event (by
    /// `actor`), and a managed
    /// certificate whose current certificate it is becomes due for renewal at once (with a new key, as every renewal
    /// has), its status saying why.
    public func revoke(serial: String, reason: RevocationReason, at date: Date, actor: String) async throws
        -> RevocationOutcome
    {
        let serial = serial.lowercased()
        return try await commitReturning { db in
            guard
                let row = try Row.fetchOne(
                    try db.cachedStatement(sql: "SELECT * FROM certificates WHERE serial = ?"), arguments: [serial])
            else {
                return .unknown
            }
            let entry = try Self.entry(from: row)
            if entry.storedStatus == .revoked { return .alreadyRevoked(entry) }
            if entry.notAfter <= date { return .expired(entry) }
            try db.cachedStatement(
                sql:
                    "UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? WHERE serial = ? AND status = 'valid'"
            )
            .execute(arguments: [Int64(date.timeIntervalSince1970), reason.name, serial])
            try Self.insert(
                AuditEvent(
                    at: date, actor: actor, action: "certificate.revoke", outcome: .success, subject: serial,
                    names: entry.dnsNames + entry.ipAddresses, reason: reason.name), into: db)
            try db.cachedStatement(
                sql: """
                    UPDATE managed_certificates SET next_attempt_ms = ?, last_error = ?, last_error_reason = 'Revoked' WHERE serial = ?
                    """
            ).execute(arguments: [
                Self.milliseconds(date),
                "the current certificate \(serial) was revoked (\(reason.name)); renewing with a new key", serial,
            ])
            var revoked = entry
            revoked.storedStatus = .revoked
            revoked.revokedAt = Date(timeIntervalSince1970: Double(Int64(date.timeIntervalSince1970)))
            revoked.revocationReason = reason.name
            return .revoked(revoked)
        }
    }
}
