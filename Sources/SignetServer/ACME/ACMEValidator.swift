import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import SignetACME
import SignetAuthority
import SwiftASN1
import X509

/// The validation authority: proves, by contacting the identifier, that an account controls it. http-01 (RFC 8555
/// §8.3) with Boulder's redirect rules, dns-01 (§8.4) through the configured resolver, tls-alpn-01 (RFC 8737).
/// Returns the problem that failed the challenge, or nil when it passed.
struct ACMEValidator: Sendable {
    let settings: ACMESettings
    /// Redirects off (followed here, under the rules below), certificate checks off: a validation target's https
    /// redirect may serve any certificate (as Boulder allows).
    let http: HTTPClient
    let dns: DNSLookup
    let logger: Logger

    /// Boulder reads at most 128 bytes of an http-01 answer; a key authorization is about 87.
    static let maximumBody = 1024
    static let maximumRedirects = 10

    init(settings: ACMESettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        let timeout = Self.timeAmount(settings.validationTimeout)
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls, redirectConfiguration: .disallow, timeout: .init(connect: timeout, read: timeout),
            decompression: .disabled
        )
        configuration.connectionPool = .init(idleTimeout: .seconds(1))
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let server = settings.resolver.flatMap { HostPort.split($0) }.map { (host: $0.host, port: $0.port) }
        dns = DNSLookup(server: server, timeoutSeconds: max(1, Int(settings.validationTimeout.components.seconds)))
    }

    func shutdown() async throws {
        try await http.shutdown()
    }

    var timeout: TimeAmount { Self.timeAmount(settings.validationTimeout) }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    func validate(_ type: ChallengeType, identifier: ACMEIdentifier, token: String, keyAuthorization: String) async
        -> ACMEError?
    {
        do {
            switch type {
            case .http01: try await http01(identifier, token: token, keyAuthorization: keyAuthorization)
            case .dns01: try await dns01(identifier, keyAuthorization: keyAuthorization)
            case .tlsALPN01: try await tlsALPN01(identifier, keyAuthorization: keyAuthorization)
            }
            return nil
        } catch let error as ACMEError {
            return error
        } catch let error as DNSLookup.Failure {
            return ACMEError(.dns, "\(error)")
        } catch {
            return ACMEError(.connection, "\(type.rawValue) for \(identifier.value): \(error)")
        }
    }

    // MARK: http-01

    private func http01(_ identifier: ACMEIdentifier, token: String, keyAuthorization: String) async throws {
        let first = Self.hostInURL(identifier.value) + (settings.httpPort == 80 ? "" : ":\(settings.httpPort)")
        var url = "http://\(first)/.well-known/acme-challenge/\(token)"
        for _ in 0...Self.maximumRedirects {
            guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
                let host = components.host, !host.isEmpty
            else {
                throw ACMEError(.connection, "cannot follow \(url)")
            }
            guard scheme == "http" || scheme == "https" else {
                throw ACMEError(.connection, "redirect to \(url): only http and https are followed")
            }
            let port = components.port ?? (scheme == "https" ? 443 : 80)
            let allowed = scheme == "http" ? settings.httpPort : settings.tlsPort
            guard port == allowed else {
                throw ACMEError(.connection, "redirect to \(url): \(scheme) is followed to port \(allowed) only")
            }
            let bareHost = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
            let address = try await connectAddress(bareHost)
            let path =
                (components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath)
                + (components.percentEncodedQuery.map { "?" + $0 } ?? "")
            var request = HTTPClientRequest(url: "\(scheme)://\(Self.hostInURL(address)):\(port)\(path)")
            request.headers.add(
                name: "Host",
                value: Self.hostInURL(bareHost) + (port == (scheme == "https" ? 443 : 80) ? "" : ":\(port)"))
            request.headers.add(name: "User-Agent", value: "Signet-ACME-validator")
            request.headers.add(name: "Accept", value: "*/*")
            let response: HTTPClientResponse
            do {
                response = try await http.execute(request, timeout: timeout)
            } catch {
                throw ACMEError(.connection, "GET \(url): \(error)")
            }
            if (300...399).contains(Int(response.status.code)) {
                guard let location = response.headers.first(name: "Location"),
                    let next = URL(string: location, relativeTo: URL(string: url))?.absoluteString
                else {
                    throw ACMEError(
                        .connection, "GET \(url) answered \(response.status.code) without a usable Location")
                }
                url = next
                continue
            }
            guard response.status.code == 200 else {
                throw ACMEError(
                    .unauthorized, "GET \(url) answered \(response.status.code), not 200 with the key authorization")
            }
            let body: ByteBuffer
            do {
                body = try await response.body.collect(upTo: Self.maximumBody)
            } catch {
                throw ACMEError(.unauthorized, "GET \(url): the answer is longer than \(Self.maximumBody) bytes")
            }
            let text = String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines)
            // The answer itself is not echoed: a redirect may lead anywhere the validator can reach, and what an
            // internal service says is not the requester's to read.
            guard text == keyAuthorization else {
                throw ACMEError(
                    .incorrectResponse,
                    "GET \(url) answered \(text.utf8.count) bytes that are not the key authorization '\(keyAuthorization)'"
                )
            }
            return
        }
        throw ACMEError(.connection, "more than \(Self.maximumRedirects) redirects from http://\(first)")
    }

    /// Where to connect for `host`: an address as is; a name through the configured resolver, or as a name (the
    /// system resolver) when none is configured.
    private func connectAddress(_ host: String) async throws -> String {
        guard IPAddress(host) == nil, dns.server != nil else { return host }
        return try await dns.addresses(host)[0]
    }

    static func hostInURL(_ host: String) -> String {
        host.contains(":") ? "[\(host)]" : host
    }

    // MARK: dns-01

    private func dns01(_ identifier: ACMEIdentifier, keyAuthorization: String) async throws {
        let name = "_acme-challenge." + identifier.value
        let expected = ChallengeType.dnsDigest(of: keyAuthorization)
        let found = try await dns.txt(name)
        guard found.contains(expected) else {
            throw ACMEError(
                .incorrectResponse,
                "no TXT record at \(name) holds '\(expected)' (found \(found.count): \(found.prefix(5).map { "'\($0)'" }.joined(separator: ", ")))"
            )
        }
    }

    // MARK: tls-alpn-01

    private func tlsALPN01(_ identifier: ACMEIdentifier, keyAuthorization: String) async throws {
        let serverName = TLSALPNChallenge.serverName(for: identifier)
        let address = try await connectAddress(identifier.value)
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.applicationProtocols = [TLSALPNChallenge.protocolName]
        configuration.minimumTLSVersion = .tlsv12
        let certificate: Certificate
        do {
            certificate = try await validationCertificate(configuration, address: address, serverName: serverName)
        } catch let error as ACMEError where error.detail.contains("KEY_USAGE_BIT_INCORRECT") {
            // Validation certificates often carry keyUsage keyEncipherment alone (lego's do), which BoringSSL refuses
            // for a signed key exchange. Go's TLS, which Boulder validates with, ignores keyUsage; RSA key transport
            // under TLS 1.2 is what such a certificate allows, so ask for that.
            configuration.maximumTLSVersion = .tlsv12
            configuration.cipherSuiteValues = [.TLS_RSA_WITH_AES_128_GCM_SHA256, .TLS_RSA_WITH_AES_256_GCM_SHA384]
            certificate = try await validationCertificate(configuration, address: address, serverName: serverName)
        }
        try Self.check(certificate, for: identifier, keyAuthorization: keyAuthorization)
    }

    /// The certificate a server presents for `serverName` after negotiating `acme-tls/1`.
    private func validationCertificate(_ configuration: TLSConfiguration, address: String, serverName: String)
        async throws -> Certificate
    {
        let context = try NIOSSLContext(configuration: configuration)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let handshake = loop.makePromise(of: Handshake.self)
        let timeout = self.timeout
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: context, serverHostname: serverName))
                        try channel.pipeline.syncOperations.addHandler(HandshakeObserver(promise: handshake))
                    }
                }
                .connect(host: address, port: settings.tlsPort).get()
        } catch {
            handshake.fail(error)
            throw ACMEError(.connection, "connecting to \(address):\(settings.tlsPort): \(error)")
        }
        let deadline = loop.scheduleTask(in: timeout) {
            handshake.fail(ACMEError(.connection, "no TLS handshake within the timeout"))
        }
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        let result: Handshake
        do {
            result = try await handshake.futureResult.get()
        } catch let error as ACMEError {
            throw error
        } catch {
            throw ACMEError(.tls, "TLS handshake with \(address):\(settings.tlsPort) (SNI \(serverName)): \(error)")
        }
        guard result.negotiated == TLSALPNChallenge.protocolName else {
            throw ACMEError(
                .tls,
                "the server negotiated ALPN \(result.negotiated.map { "'\($0)'" } ?? "nothing"), not '\(TLSALPNChallenge.protocolName)'"
            )
        }
        guard let peer = result.certificate else { throw ACMEError(.tls, "the server presented no certificate") }
        return try Certificate(derEncoded: peer)
    }

    /// RFC 8737 §3: exactly one subjectAltName, the identifier; a critical acmeIdentifier extension holding the key
    /// authorization's digest.
    static func check(_ certificate: Certificate, for identifier: ACMEIdentifier, keyAuthorization: String) throws {
        let names: [GeneralName] =
            ((try? certificate.extensions.subjectAlternativeNames) ?? nil).map { Array($0) } ?? []
        let matches: Bool
        switch names.first {
        case .dnsName(let name)? where names.count == 1:
            matches = identifier.type == .dns && name.lowercased() == identifier.value
        case .ipAddress(let bytes)? where names.count == 1:
            matches = identifier.type == .ip && IPAddress(bytes: bytes.bytes) == IPAddress(identifier.value)
        default: matches = false
        }
        guard matches else {
            throw ACMEError(
                .unauthorized,
                "the validation certificate must name exactly \(identifier.value) in its subjectAltName; it names \(names)"
            )
        }
        let oid = try ASN1ObjectIdentifier(elements: TLSALPNChallenge.extensionOID)
        guard let found = certificate.extensions[oid: oid] else {
            throw ACMEError(.unauthorized, "the validation certificate has no acmeIdentifier extension")
        }
        guard found.critical else {
            throw ACMEError(.unauthorized, "the validation certificate's acmeIdentifier extension is not critical")
        }
        guard Array(found.value) == TLSALPNChallenge.expectedExtensionValue(keyAuthorization: keyAuthorization) else {
            throw ACMEError(
                .incorrectResponse,
                "the validation certificate's acmeIdentifier does not hold this challenge's key authorization digest")
        }
    }
}

/// What a validation handshake yielded: the ALPN protocol and the server's certificate (DER).
private struct Handshake: Sendable {
    let negotiated: String?
    let certificate: [UInt8]?
}

/// Completes `promise` once the TLS handshake is done, with the negotiated protocol and the certificate read there
/// and then (a validation server may close the connection right after the handshake, taking the TLS handler with
/// it), or with the error that ended the connection first.
private final class HandshakeObserver: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    let promise: EventLoopPromise<Handshake>
    private var done = false

    init(promise: EventLoopPromise<Handshake>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let negotiated) = event, !done {
            done = true
            let peer = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate
            promise.succeed(Handshake(negotiated: negotiated, certificate: try? peer?.toDERBytes()))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            done = true
            promise.fail(error)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            promise.fail(ChannelError.eof)
        }
        context.fireChannelInactive()
    }
}
