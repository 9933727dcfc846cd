import Logging
import NIOSSL
import ServiceLifecycle
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The server's own TLS certificate when Signet issues it to itself. Each new handshake is given the current
/// certificate, and `Renewal` replaces it at its renew-after time, so a server that runs for months never
/// presents an expired certificate and never needs a restart for it.
final class ServerIdentity: Sendable {
    struct Credentials: Sendable {
        let chain: [NIOSSLCertificateSource]
        let key: NIOSSLPrivateKeySource
        let serial: String
        let renewAfter: Date
    }

    typealias Issuer = @Sendable () async throws -> Credentials

    private let current: Mutex<Credentials>
    private let issue: Issuer

    init(issue: @escaping Issuer) async throws {
        self.issue = issue
        self.current = Mutex(try await issue())
    }

    var credentials: Credentials { current.withLock { $0 } }

    /// What NIOSSL applies to each handshake: the certificate current at that moment.
    var handshakeOverride: NIOSSLContextConfigurationOverride {
        let credentials = self.credentials
        var override = NIOSSLContextConfigurationOverride()
        override.certificateChain = credentials.chain
        override.privateKey = credentials.key
        return override
    }

    func renew() async throws {
        let fresh = try await issue()
        current.withLock { $0 = fresh }
    }

    /// Sleeps until the certificate's renew-after time, renews it, and repeats; on failure it retries after
    /// `retryInterval`, long before the certificate itself expires.
    struct Renewal: Service {
        let identity: ServerIdentity
        let logger: Logger
        var retryInterval: Duration = .seconds(60)

        func run() async throws {
            while !Task.isShuttingDownGracefully {
                let wait = max(0, identity.credentials.renewAfter.timeIntervalSinceNow)
                do {
                    try await cancelWhenGracefulShutdown {
                        try await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
                    }
                } catch {
                    return
                }
                do {
                    try await identity.renew()
                    logger.info(
                        "renewed the server's own TLS certificate",
                        metadata: ["serial": "\(identity.credentials.serial)"])
                } catch {
                    logger.error(
                        "could not renew the server's own TLS certificate; retrying", metadata: ["error": "\(error)"])
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: retryInterval) }
                }
            }
        }
    }
}
