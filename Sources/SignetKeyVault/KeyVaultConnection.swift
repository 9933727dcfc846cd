import AsyncHTTPClient
import Foundation
import Logging
import NIOSSL

/// Opens a Key Vault client the way every part of Signet needs it: HTTPS trusting the system roots plus an optional
/// extra bundle, and Entra ID credentials chosen from the environment. The caller owns `http` and shuts it down.
public enum KeyVaultConnection {
    public static func open(
        vaultURL: String,
        apiVersion: String = "7.6",
        caFile: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        maximumConnections: Int = 8,
        observer: KeyVaultClient.Observer? = nil,
        logger: Logger
    ) throws -> (client: KeyVaultClient, http: HTTPClient) {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            tls.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMFile(caFile))]
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        // As many connections as signatures may be in flight, or the pool, not the admission limit, caps concurrency.
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(1, maximumConnections)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let credential = try EntraCredential.fromEnvironment(environment, http: http)
            let client = KeyVaultClient(
                vaultURL: vaultURL, apiVersion: apiVersion, credential: credential, http: http, observer: observer,
                logger: logger)
            return (client, http)
        } catch {
            try? http.syncShutdown()
            throw error
        }
    }

    /// Runs `body` with a client opened for it, and shuts the client down afterwards, whatever happens.
    public static func with<T>(
        vaultURL: String,
        caFile: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger,
        _ body: (KeyVaultClient) async throws -> T
    ) async throws -> T {
        let (client, http) = try open(vaultURL: vaultURL, caFile: caFile, environment: environment, logger: logger)
        do {
            let result = try await body(client)
            try await http.shutdown()
            return result
        } catch {
            try? await http.shutdown()
            throw error
        }
    }
}
