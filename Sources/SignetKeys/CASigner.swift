import SignetAuthority
import SwiftASN1
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Custody of the CA's private key: the seam between issuance and wherever the key lives.
///
/// Issuance, and later CRL and OCSP signing, use only `privateKey`, a swift-certificates `Certificate.PrivateKey`.
/// A key held in memory is one of its built-in cases; a remote key (Azure Key Vault, a PKCS#11 token) is a
/// `CustomPrivateKey` whose `signAsynchronously` makes the remote call. Nothing above this seam knows which.
public protocol CASigner: Sendable {
    var privateKey: Certificate.PrivateKey { get }
    /// A short name for logs and metrics: "file", "azure-key-vault", "pkcs11".
    var backend: String { get }
    /// Proves the key can still sign (for /readyz). A file key always can; a remote one makes a cheap call.
    func checkHealth() async throws
}

/// A CA key read from a PEM file into memory.
public struct FileKeySigner: CASigner {
    public let privateKey: Certificate.PrivateKey
    public var backend: String { "file" }

    public init(privateKey: Certificate.PrivateKey) {
        self.privateKey = privateKey
    }

    public init(path: String, passphrase: [UInt8]?) throws {
        let pem = try String(contentsOfFile: path, encoding: .utf8)
        do {
            self.init(privateKey: try PrivateKeyPEM.read(pem, passphrase: passphrase))
        } catch {
            throw CAFileError.key(path, error)
        }
    }

    public func checkHealth() async throws {}
}

/// A signer's error that knows which kind of failure it is, so that metrics and alerts can tell a throttled
/// vault from an unreachable one or from a wrong signature. Kinds are short snake_case words.
public protocol SignerFailure: Error {
    var failureKind: String { get }
}

public enum SignerFailureKind {
    /// The kind of any error a signer throws: its own word when it has one, "other" when not.
    public static func of(_ error: any Error) -> String {
        (error as? any SignerFailure)?.failureKind ?? "other"
    }
}

/// Wraps any CA key so that each signature is timed and reported, whatever backend makes it.
public struct ObservedPrivateKey: CustodyKey {
    /// Receives each signature's duration and, when it failed, the error.
    public typealias Observer = @Sendable (_ seconds: Double, _ failure: (any Error)?) -> Void

    let inner: Certificate.PrivateKey
    let observer: Observer

    public init(_ inner: Certificate.PrivateKey, observer: @escaping Observer) {
        self.inner = inner
        self.observer = observer
    }

    public var publicKey: Certificate.PublicKey { inner.publicKey }

    public func signSynchronously(bytes: some DataProtocol, signatureAlgorithm: Certificate.SignatureAlgorithm) throws
        -> Certificate.Signature
    {
        let start = ContinuousClock.now
        do {
            let signature = try inner.sign(bytes: bytes, signatureAlgorithm: signatureAlgorithm)
            observer(Self.seconds(since: start), nil)
            return signature
        } catch {
            observer(Self.seconds(since: start), error)
            throw error
        }
    }

    public func signAsynchronously(
        bytes: some DataProtocol & Sendable, signatureAlgorithm: Certificate.SignatureAlgorithm
    ) async throws -> Certificate.Signature {
        let start = ContinuousClock.now
        do {
            let signature = try await inner.signAsynchronously(bytes: bytes, signatureAlgorithm: signatureAlgorithm)
            observer(Self.seconds(since: start), nil)
            return signature
        } catch {
            observer(Self.seconds(since: start), error)
            throw error
        }
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.inner == rhs.inner }
    public func hash(into hasher: inout Hasher) { hasher.combine(inner) }

    private static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}
