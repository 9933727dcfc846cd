import Crypto
import GRDB
import SignetAuthority

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension CertificateLedger {
    /// A fresh anti-replay nonce: 16 random bytes, unpadded base64url (what certbot decodes), valid until `lifetime`
    /// has passed or it is used.
    public func issueNonce(lifetime: Duration = .seconds(3600), now: Date = Date()) async throws -> String {
        let value = Base64URL.encode(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) })
        let expires = now.addingTimeInterval(Double(lifetime.components.seconds))
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO acme_nonces (value, expires_ms) VALUES (?, ?)", arguments: [value, Self.milliseconds(expires)])
        }
        return value
    }

    /// Uses a nonce: true exactly once for a nonce this ledger handed out and that has not expired.
    public func consumeNonce(_ value: String, now: Date = Date()) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM acme_nonces WHERE value = ? AND expires_ms > ?", arguments: [value, Self.milliseconds(now)])
            return db.changesCount == 1
        }
    }

    /// Forgets expired nonces; returns how many.
    @discardableResult
    public func pruneNonces(now: Date = Date()) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM acme_nonces WHERE expires_ms <= ?", arguments: [Self.milliseconds(now)])
            return db.changesCount
        }
    }
}
