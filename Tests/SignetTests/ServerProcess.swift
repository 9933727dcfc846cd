import Foundation
import Testing

/// `signet serve` as a separate process on a free loopback port: what a user runs, HTTPS included.
final class ServerProcess: @unchecked Sendable {
    // @unchecked: the Process is only touched from the test that owns this value.
    let dataDirectory: String
    let port: Int
    let process: Process
    let log: String

    var url: String { "https://127.0.0.1:\(port)" }
    let caDirectory: String
    var rootCertificate: String { caDirectory + "/root.crt" }
    var intermediateCertificate: String { caDirectory + "/intermediate.crt" }

    init(dataDirectory: String? = nil, arguments: [String] = [], environment: [String: String] = [:], port: Int? = nil)
        throws
    {
        self.dataDirectory = try dataDirectory ?? Fixtures.temporaryDirectory("signet-serve")
        self.port = try port ?? freePort()
        self.caDirectory = environment["SIGNET_CA_DIR"] ?? self.dataDirectory + "/ca"
        try FileManager.default.createDirectory(atPath: self.dataDirectory, withIntermediateDirectories: true)
        self.log = self.dataDirectory + "/serve.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process = Process()
        process.executableURL = URL(fileURLWithPath: Fixtures.signetBinary)
        process.arguments = ["serve"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(
            [
                "SIGNET_DATA_DIR": self.dataDirectory,
                "SIGNET_LISTEN": "127.0.0.1:\(self.port)",
            ].merging(environment) { $1 }
        ) { $1 }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        SuiteProcesses.register(process)
        try waitUntilHealthy()
    }

    /// Polls /healthz with curl until it answers, for at most 30 s (a first start creates a CA).
    func waitUntilHealthy() throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            guard process.isRunning else { throw ServerFailed(log: logText) }
            if FileManager.default.fileExists(atPath: rootCertificate),
                let result = try? Tool.run(
                    "curl", ["-sf", "--max-time", "2", "--cacert", rootCertificate, url + "/healthz"]), result.succeeded
            {
                return
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw ServerFailed(log: "not healthy after 30 s\n" + logText)
    }

    /// The Prometheus exposition text of /metrics.
    func metrics() throws -> String {
        try Tool.run("curl", ["-sf", "--max-time", "10", "--cacert", rootCertificate, url + "/metrics"]).output
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    func signet(_ arguments: [String], input: String? = nil) throws -> Tool.Result {
        try Tool.run(Fixtures.signetBinary, arguments, input: input, environment: ["SIGNET_DATA_DIR": dataDirectory])
    }

    /// A token made with the CLI, exactly as an operator would.
    func createToken(name: String, allow: [String], extra: [String] = []) throws -> String {
        let result = try signet(["token", "create", "--name", name] + allow.flatMap { ["--allow", $0] } + extra)
        guard result.succeeded else { throw ServerFailed(log: result.error) }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func kill(signal: Int32) {
        Foundation.kill(process.processIdentifier, signal)
    }

    /// Stops the server as Kubernetes would (SIGTERM) and waits for it to end; one that is still running after 20 s
    /// is killed, and that hang is a test failure, not a wait without end.
    func stop() {
        if !process.terminate(within: 20) {
            Issue.record(
                "signet serve did not end within 20 s of SIGTERM; killed. Its log ends:\n\(logText.suffix(4000))")
        }
    }

    deinit { stop() }

    struct ServerFailed: Error, CustomStringConvertible {
        let log: String
        var description: String { "signet serve failed:\n" + log }
    }
}
