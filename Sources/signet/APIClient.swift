import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import SignetOpenAPI

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
        return (server.hasSuffix("/") ? String(server.dropLast()) : server, token ?? environment["SIGNET_TOKEN"], cacert ?? environment["SIGNET_CACERT"])
    }
}

/// A small REST client for the commands; it decodes answers into the contract's generated types.
struct APIClient {
    let base: String
    let token: String?
    let http: HTTPClient

    static func with<T>(_ options: ServerOptions, _ body: (APIClient) async throws -> T) async throws -> T {
        let (server, token, cacert) = try options.resolved()
        var tls = TLSConfiguration.makeClientConfiguration()
        if let cacert {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(cacert))
        }
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        do {
            let result = try await body(APIClient(base: server, token: token, http: http))
            try await http.shutdown()
            return result
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    func send(_ method: HTTPMethod, _ path: String, json: Data? = nil, accept: String = "application/json") async throws -> Data {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "Accept", value: accept)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: json))
        }
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 16 * 1024 * 1024)
        let data = Data(buffer: body)
        guard (200..<300).contains(response.status.code) else {
            if let problem = try? JSONDecoder().decode(Components.Schemas.Problem.self, from: data) {
                var message = "\(problem.status) \(problem.title)" + (problem.detail.map { ": \($0)" } ?? "")
                for item in problem.errors ?? [] { message += "\n  - \(item)" }
                throw CommandFailure(message)
            }
            throw CommandFailure("\(response.status.code) \(response.status.reasonPhrase)")
        }
        return data
    }

    func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(type, from: data)
    }
}
