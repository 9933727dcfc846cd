import Foundation

/// A throwaway PostgreSQL server for the tests (Debian's `postgresql`): a cluster made by `initdb` in a temporary
/// directory, listening on a free loopback port, started once per test process and stopped when that process ends
/// (a watchdog shell waits for the test process, then stops the server and removes the cluster). Each test gets a
/// database of its own from `makeDatabase()`.
final class PostgresServer: @unchecked Sendable {
    // @unchecked: `server` is replaced only by start() and stop(), which the owning test calls in turn.
    let port: Int
    let directory: String
    let binaries: String
    let user = "signet"
    private let asRoot = getuid() == 0
    private var server: Process?

    /// The deadline of ledgers opened inside the test process. They share two cores with the whole suite, where an
    /// answer can wait seconds for a thread: slow here is starvation, not an outage. Outages are tested on
    /// `signet serve` processes (ReplicaTests), with the ledger's own deadline.
    static let inProcessDeadline: Duration = .seconds(300)

    /// The suite's server: started on first use, the same for every test after it.
    static let shared: Result<PostgresServer, any Error> = Result { try PostgresServer() }

    /// A server of its own, for a test that stops and restarts it.
    init() throws {
        guard
            let version = try FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")
                .compactMap(Int.init).max()
        else { throw Tool.ToolMissing(name: "postgresql (initdb)") }
        binaries = "/usr/lib/postgresql/\(version)/bin"
        port = try freePort()
        directory = "/tmp/signet-postgres-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // initdb and postgres refuse to run as root: as root, the cluster belongs to Debian's postgres user.
        if asRoot { try Tool.run("chown", ["postgres:postgres", directory]) }
        let made = try asOwner("initdb", ["-D", data, "-U", user, "-A", "trust", "-E", "UTF8", "--no-sync"])
        guard made.succeeded else { throw PostgresServerFailure(step: "initdb", output: made.output + made.error) }
        try start()
        // Stops the server once this test process is gone, however it ended.
        let stop = (asRoot ? "runuser -u postgres -- " : "") + "\(binaries)/pg_ctl -D \(data) -m immediate stop"
        let watchdog = Process()
        watchdog.executableURL = URL(fileURLWithPath: "/bin/sh")
        watchdog.arguments = [
            "-c",
            "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; \(stop) >/dev/null 2>&1; rm -rf \(directory)",
        ]
        watchdog.standardOutput = FileHandle.nullDevice
        watchdog.standardError = FileHandle.nullDevice
        try watchdog.run()
    }

    private var data: String { directory + "/data" }

    private func asOwner(_ command: String, _ arguments: [String]) throws -> Tool.Result {
        asRoot
            ? try Tool.run("runuser", ["-u", "postgres", "--", binaries + "/" + command] + arguments)
            : try Tool.run(binaries + "/" + command, arguments)
    }

    /// Starts the server and waits until it accepts connections.
    ///
    /// The server runs in the foreground as a child of this process, not daemonized by pg_ctl: Foundation learns that
    /// a child ended when every copy of a descriptor it gave the child is closed, and a daemon left behind by pg_ctl
    /// would keep pg_ctl's copy open, so pg_ctl would never be seen to end.
    func start() throws {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: asRoot ? try Tool.which("runuser") : binaries + "/postgres")
        server.arguments =
            (asRoot ? ["-u", "postgres", "--", binaries + "/postgres"] : [])
            + [
                "-D", data, "-p", String(port), "-k", directory, "-c", "listen_addresses=127.0.0.1", "-c",
                "max_connections=300",
            ]
        let logPath = directory + "/server.log"
        if !FileManager.default.fileExists(atPath: logPath) {
            precondition(FileManager.default.createFile(atPath: logPath, contents: nil), "the server's log file")
        }
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        logHandle.seekToEndOfFile()
        server.standardOutput = logHandle
        server.standardError = logHandle
        try server.run()
        self.server = server
        let deadline = Date().addingTimeInterval(60)
        while try !Tool.run(binaries + "/pg_isready", ["-q", "-h", "127.0.0.1", "-p", String(port)]).succeeded {
            guard server.isRunning, Date() < deadline else {
                let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                throw PostgresServerFailure(step: "starting postgres", output: output)
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    /// Stops the server (a fast shutdown: open sessions are ended) and waits until it has exited.
    func stop() throws {
        let stopped = try asOwner("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"])
        guard stopped.succeeded else { throw PostgresServerFailure(step: "pg_ctl stop", output: stopped.error) }
        server?.waitUntilExit()
        server = nil
    }

    /// Runs SQL on database `name` and returns psql's unaligned, tuples-only output.
    func query(_ name: String, _ sql: String) throws -> String {
        let result = try Tool.run(
            binaries + "/psql",
            ["-h", "127.0.0.1", "-p", String(port), "-U", user, "-d", name, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        guard result.succeeded else { throw PostgresServerFailure(step: "psql", output: result.error) }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A new, empty database on the server; its name.
    func makeDatabase() throws -> String {
        let name = "t_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        let made = try Tool.run(
            binaries + "/psql",
            ["-h", "127.0.0.1", "-p", String(port), "-U", user, "-d", "postgres", "-c", "CREATE DATABASE \(name)"])
        guard made.succeeded else { throw PostgresServerFailure(step: "CREATE DATABASE", output: made.error) }
        return name
    }

    /// The URL of database `name` (trust authentication on loopback, no TLS).
    func url(_ name: String) -> String { "postgres://\(user)@127.0.0.1:\(port)/\(name)?sslmode=disable" }
}

struct PostgresServerFailure: Error, CustomStringConvertible {
    let step: String
    let output: String
    var description: String { "the tests' PostgreSQL server: \(step) failed: \(output)" }
}
