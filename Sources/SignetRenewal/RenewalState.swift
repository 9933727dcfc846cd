import X509

/// Where a renewal keeps what must survive an interruption: the key it is getting a certificate for, stored before
/// anything is signed for it, and the outcome once the Secret holds the certificate. The ledger keeps it for managed
/// certificates; a Secret of its own and the resource's status for the controller's Certificates.
public protocol RenewalStateStore: Sendable {
    /// The key an interrupted attempt stored (PEM), if any.
    func pendingKey() async throws -> String?
    /// Stores `pem` as the pending key, replacing one that is unusable (`replacing`); returns the key pending after
    /// the write, which is another writer's if one won a race.
    func storePendingKey(_ pem: String, replacing: Bool) async throws -> String
    /// The Secret holds the certificate: record it, and let the pending key go.
    func complete(_ renewal: CompletedRenewal) async throws
}

/// Where certificates come from: the issuance service in the server, Signet's API in the controller.
public protocol CertificateSource: Sendable {
    /// The newest certificate already issued for this key to this renewal's requester, if any: an interrupted
    /// attempt's, found so that a retry never signs twice.
    func issued(publicKeySHA256: String) async throws -> CertificateForKey?
    /// Issues a certificate for the CSR; the chain from the leaf up to, not including, the root.
    func issue(csrPEM: String) async throws -> [Certificate]
}

/// A certificate the source already issued for a key.
public struct CertificateForKey: Sendable {
    public var serial: String
    /// Canonical names, as `RenewalJob.names`.
    public var names: Set<String>
    public var revoked: Bool
    /// Leaf first, without the root.
    public var chain: [Certificate]

    public init(serial: String, names: Set<String>, revoked: Bool, chain: [Certificate]) {
        self.serial = serial
        self.names = names
        self.revoked = revoked
        self.chain = chain
    }
}
