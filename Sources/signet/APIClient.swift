import ArgumentParser
import Foundation
import SignetClient

/// How client commands reach a Signet server. Each option also reads an environment variable.
struct ServerOptions: ParsableArguments {
    @Option(help: "The server's URL (env SIGNET_SERVER).")
    var server: String?

    @Option(help: "An API token (env SIGNET_TOKEN).")
    var token: String?

    @Option(help: "CA bundle that verifies the server's certificate (env SIGNET_CACERT); default: the system roots.")
    var cacert: String?

    func resolved() throws -> (server: String, token: String?, cacert: String?) {
        let environment = ProcessInfo.processInfo.environment
        guard let server = server ?? environment["SIGNET_SERVER"] else {
            throw ValidationError("give --server URL (or set SIGNET_SERVER)")
        }
        return (
            server.hasSuffix("/") ? String(server.dropLast()) : server, token ?? environment["SIGNET_TOKEN"],
            cacert ?? environment["SIGNET_CACERT"]
        )
    }
}

extension SignetClient {
    /// Signet's client for one command, with the command's API token, shut down when the command is done; what Signet
    /// refuses is the command's failure, in Signet's words.
    static func with<T>(_ options: ServerOptions, _ body: (SignetClient) async throws -> T) async throws -> T {
        let (server, token, cacert) = try options.resolved()
        let client = try SignetClient(url: server, caFile: cacert) { token }
        do {
            let result = try await body(client)
            try await client.shutdown()
            return result
        } catch let failure as SignetClient.Failure {
            try? await client.shutdown()
            throw CommandFailure(failure.description)
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}
