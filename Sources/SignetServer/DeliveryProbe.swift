import NIOCore
import NIOPosix
import NIOSSL
import SignetAuthority
import SwiftASN1
import Synchronization
import X509

/// Asks a TLS gateway which certificate it serves for a name: a handshake with SNI set to the name, stopped as soon
/// as the server's certificate has arrived. Nothing is trusted or sent; this only observes, so that "the Secret was
/// written" can be followed by "and the gateway serves it".
enum DeliveryProbe {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The serial (lower-case hex) of the leaf served at `host:port` for `serverName`.
    static func servedSerial(host: String, port: Int, serverName: String, timeout: TimeAmount = .seconds(5))
        async throws -> String
    {
        var configuration = TLSConfiguration.makeClientConfiguration()
        // The custom callback below replaces verification; with `.none` BoringSSL would never call it.
        configuration.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: configuration)
        let outcome = Mutex<EventLoopPromise<NIOSSLCertificate>?>(nil)
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: NIOSSLCertificate.self)
        outcome.withLock { $0 = promise }
        let settle: @Sendable (Result<NIOSSLCertificate, any Error>) -> Void = { result in
            // Whichever of the callback, the close and the timeout comes first decides; the others find nothing.
            outcome.withLock { pending in
                pending?.completeWith(result)
                pending = nil
            }
        }
        let bootstrap = ClientBootstrap(group: promise.futureResult.eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = try NIOSSLClientHandler(context: context, serverHostname: serverName) {
                        certificates, verification in
                        if let leaf = certificates.first {
                            settle(.success(leaf))
                        } else {
                            settle(.failure(Failure(description: "the gateway sent no certificate")))
                        }
                        // Accepted so the handshake ends cleanly (no alert in the gateway's log); the caller closes.
                        verification.succeed(.certificateVerified)
                    }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            settle(.failure(Failure(description: "cannot connect to \(host):\(port): \(error)")))
            throw Failure(description: "cannot connect to \(host):\(port): \(error)")
        }
        channel.closeFuture.whenComplete { _ in
            settle(
                .failure(
                    Failure(
                        description:
                            "the gateway closed the connection without presenting a certificate for \(serverName)")))
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            settle(
                .failure(
                    Failure(
                        description: "no certificate from \(host):\(port) within \(timeout.nanoseconds / 1_000_000) ms")
                ))
        }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        let served = try await promise.futureResult.get()
        let leaf = try Certificate(derEncoded: try served.toDERBytes())
        return SerialNumbers.hex(leaf.serialNumber)
    }
}
