import Synchronization

/// Where a remote signer leaves the facts an auditor needs to find a signature in the signer's own logs (for Key
/// Vault: the key version and the `x-ms-request-id` of the sign call). Issuance sets one around each signing and
/// copies what it holds into the certificate's ledger row; a file key leaves it empty.
public final class SignatureReceipt: Sendable {
    public struct Facts: Sendable, Equatable {
        public var keyVersion: String?
        public var requestID: String?

        public init(keyVersion: String? = nil, requestID: String? = nil) {
            self.keyVersion = keyVersion
            self.requestID = requestID
        }
    }

    private let facts = Mutex(Facts())

    public init() {}

    public func record(_ new: Facts) { facts.withLock { $0 = new } }
    public var recorded: Facts { facts.withLock { $0 } }

    /// A task-local because the value crosses a library boundary: swift-certificates calls the signer
    /// (`CustomPrivateKey.signAsynchronously`) with the bytes to sign and nothing else, so there is no parameter to
    /// carry the receipt through; issuance sets it around the one call and reads it right after.
    @TaskLocal public static var current: SignatureReceipt?
}
