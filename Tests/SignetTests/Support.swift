import Crypto
import Foundation
import SignetAuthority
import SignetKeys
import SwiftASN1
import Testing
import X509
import _CryptoExtras

/// Builders and tools the tests share. Fixtures are made in code (or by openssl, a real peer), never checked in.
enum Fixtures {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The `signet` binary built alongside the tests (`swift build --build-tests` builds every product).
    static var signetBinary: String {
        if let path = ProcessInfo.processInfo.environment["SIGNET_BINARY"] { return path }
        for configuration in ["debug", "release"] {
            let path = packageRoot + "/.build/\(configuration)/signet"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return packageRoot + "/.build/debug/signet"
    }

    static func temporaryDirectory(_ label: String = "signet-test") throws -> String {
        let path = NSTemporaryDirectory() + "\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func csr(
        key: Certificate.PrivateKey = Certificate.PrivateKey(P256.Signing.PrivateKey()),
        commonName: String? = nil,
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        uris: [String] = [],
        extraExtensions: [Certificate.Extension] = []
    ) throws -> String {
        var extensions = Certificate.Extensions()
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        names += ipAddresses.map { .ipAddress(ASN1OctetString(contentBytes: IPAddress($0)!.bytes[...])) }
        names += uris.map { .uniformResourceIdentifier($0) }
        if !names.isEmpty {
            try extensions.append(Certificate.Extension(SubjectAlternativeNames(names), critical: false))
        }
        for ext in extraExtensions { try extensions.append(ext) }
        var attributes = CertificateSigningRequest.Attributes()
        if !extensions.isEmpty { attributes.insert(try .init(ExtensionRequest(extensions: extensions))) }
        let subject = try commonName.map { name in try DistinguishedName { CommonName(name) } } ?? DistinguishedName()
        let request = try CertificateSigningRequest(
            version: .v1, subject: subject, privateKey: key, attributes: attributes,
            signatureAlgorithm: try IssuingCA.signatureAlgorithm(for: key.publicKey)
        )
        return try request.serializeAsPEM().pemString
    }

    /// A CA in memory: a root and an intermediate, both P-256 unless asked otherwise.
    static func issuingCA(keyAlgorithm: KeyAlgorithm = .ecdsaP256, directory: String? = nil) async throws -> (
        IssuingCA, CADirectory
    ) {
        let path = try directory ?? temporaryDirectory("signet-ca")
        var initializer = CAInitializer()
        initializer.keyAlgorithm = keyAlgorithm
        initializer.organization = "Signet Test"
        let ca = CADirectory(path: path)
        try await initializer.create(in: ca, overwrite: false)
        let signer = try FileKeySigner(path: ca.key, passphrase: nil)
        return (try await CALoader.load(from: ca, signer: signer), ca)
    }

    static func policy(_ patterns: String..., maximum: Duration = .seconds(90 * 86_400)) throws -> IssuancePolicy {
        IssuancePolicy(
            allowedNames: try patterns.map { try NamePattern($0) }, maximumLifetime: maximum, defaultLifetime: maximum)
    }
}

/// Runs a real program (openssl, nginx, curl) and captures its output.
struct Tool {
    struct Result {
        let status: Int32
        let output: String
        let error: String
        var succeeded: Bool { status == 0 }
    }

    @discardableResult
    static func run(
        _ executable: String, _ arguments: [String], input: String? = nil, environment: [String: String]? = nil,
        directory: String? = nil
    ) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : try which(executable))
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let stdout = Pipe(), stderr = Pipe(), stdin = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        // Read both pipes before waiting, so a chatty program never blocks on a full pipe.
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, output: String(decoding: out, as: UTF8.self),
            error: String(decoding: err, as: UTF8.self))
    }

    /// Resolves a program as the shell would (PATH first), so tests run the same python3 the test script
    /// installed packages for; sbin directories are searched too, for nginx.
    static func which(_ name: String) throws -> String {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        for directory in path + ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
            let path = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw ToolMissing(name: name)
    }

    static func isInstalled(_ name: String) -> Bool { (try? which(name)) != nil }

    struct ToolMissing: Error, CustomStringConvertible {
        let name: String
        var description: String { "\(name) is not installed; run the README's test command, which installs it" }
    }
}

extension String {
    func write(to path: String) throws {
        try write(toFile: path, atomically: true, encoding: .utf8)
    }
}

/// A free TCP port on loopback, found by binding port 0.
func freePort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
        }
    }
    guard bound else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: address.sin_port))
}

extension Process {
    /// Sends SIGTERM and waits up to `grace` seconds for the process to end, then SIGKILL: a test's cleanup never
    /// waits forever on a program that does not shut down. Returns whether it ended by itself within `grace`.
    @discardableResult
    func terminate(within grace: TimeInterval) -> Bool {
        guard isRunning else { return true }
        terminate()
        let deadline = Date().addingTimeInterval(grace)
        while isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let ended = !isRunning
        if !ended { kill(processIdentifier, SIGKILL) }
        waitUntilExit()
        return ended
    }
}

/// Child processes that serve a whole suite (a shared `signet serve`, BIND): a static fixture is never deinitialized,
/// so they are terminated when the test process exits instead of outliving it.
enum SuiteProcesses {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var processes: [Process] = []
    private static let hook: Void = { atexit { SuiteProcesses.terminateAll() } }()

    static func register(_ process: Process) {
        _ = hook
        lock.withLock { processes.append(process) }
    }

    static func terminateAll() {
        for process in lock.withLock({ processes }) where process.isRunning {
            process.terminate()
        }
    }
}

/// CRLs judged by openssl.
enum CRLCheck {
    /// Signs a CRL listing `leaf` (keyCompromise) with `ca`'s key and has openssl verify it against the CA certificate
    /// at `issuerPath`; returns openssl's text of the CRL when it verified, nil (with the reason recorded) otherwise.
    static func signAndVerify(_ ca: IssuingCA, revoking leaf: Certificate, issuerPath: String) async throws -> String? {
        let now = Date()
        let list = try await RevocationList.sign(
            by: ca, number: 7, thisUpdate: now, nextUpdate: now.addingTimeInterval(86_400),
            entries: [
                RevocationList.Entry(serial: Array(leaf.serialNumber.bytes), revokedAt: now, reason: .keyCompromise)
            ]
        )
        let path = try Fixtures.temporaryDirectory("crl") + "/list.crl"
        try Data(list.der).write(to: URL(fileURLWithPath: path))
        let result = try Tool.run(
            "openssl", ["crl", "-in", path, "-inform", "DER", "-noout", "-text", "-CAfile", issuerPath])
        guard (result.output + result.error).contains("verify OK") else {
            Issue.record("openssl crl -verify: \(result.output)\(result.error)")
            return nil
        }
        return result.output
    }
}

extension Fixtures {
    /// A certificate's subject key identifier as openssl prints it, in Signet's lower-case hex: the name of its CRL
    /// under /crl/.
    static func subjectKeyIdentifier(ofCertificateAt path: String) throws -> String {
        try Tool.run("openssl", ["x509", "-in", path, "-noout", "-ext", "subjectKeyIdentifier"]).output
            .split(separator: "\n").last.map {
                $0.replacingOccurrences(of: ":", with: "").trimmingCharacters(in: .whitespaces).lowercased()
            } ?? ""
    }

    /// nginx's arguments for the configuration `work/nginx.conf`, its files kept in `work` (add `-s reload` to reload).
    static func nginxArguments(work: String) -> [String] {
        ["-p", work, "-c", work + "/nginx.conf", "-e", work + "/error.log"]
    }

    /// Starts nginx in the foreground with `work/nginx.conf`; the caller terminates it.
    static func startNginx(work: String) throws -> Process {
        let nginx = Process()
        nginx.executableURL = URL(fileURLWithPath: try Tool.which("nginx"))
        nginx.arguments = nginxArguments(work: work) + ["-g", "daemon off;"]
        try nginx.run()
        return nginx
    }

    /// An nginx configuration for tests: one worker, everything it writes kept in `work`, then `servers` inside `http`.
    static func nginxConfiguration(work: String, servers: String) -> String {
        """
        worker_processes 1;
        pid \(work)/nginx.pid;
        events { worker_connections 64; }
        http {
            access_log off;
            client_body_temp_path \(work)/body;
            proxy_temp_path \(work)/proxy;
            fastcgi_temp_path \(work)/fastcgi;
            uwsgi_temp_path \(work)/uwsgi;
            scgi_temp_path \(work)/scgi;
        \(servers)
        }
        """
    }
}

/// haproxy exited, or did not open its runtime API within 20 s.
struct HAProxyNotStarted: Error, CustomStringConvertible {
    let socket: String
    var description: String { "haproxy did not open its runtime API at \(socket) within 20 s" }
}

/// haproxy as a test's gateway (its runtime API on `work/admin.sock`), and Tests/Gateway/haproxy_sync.py feeding it
/// from a Secret of the Kubernetes API double, as Istio's SDS feeds Envoy.
enum HAProxyGateway {
    /// Starts haproxy with `frontend` (its bind and rules) after the stats socket and timeouts every test uses.
    static func start(work: String, frontend: String) throws -> Process {
        try """
        global
            stats socket \(work)/admin.sock level admin
        defaults
            mode http
            timeout connect 5s
            timeout client 120s
            timeout server 120s
            timeout http-keep-alive 120s
        frontend gateway
        \(frontend)

        """.write(to: work + "/haproxy.cfg")
        let haproxy = Process()
        haproxy.executableURL = URL(fileURLWithPath: try Tool.which("haproxy"))
        haproxy.arguments = ["-f", work + "/haproxy.cfg", "-db"]
        haproxy.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        haproxy.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try haproxy.run()
        // The runtime API is what the feed and the tests talk to: haproxy counts as started once its socket exists (a
        // loaded machine has been seen to take seconds), so no caller races its start.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, haproxy.isRunning {
            if FileManager.default.fileExists(atPath: work + "/admin.sock") { return haproxy }
            Thread.sleep(forTimeInterval: 0.1)
        }
        haproxy.terminate()
        throw HAProxyNotStarted(socket: work + "/admin.sock")
    }

    /// Follows Secret `namespace/secret`, pushing its certificate (and with `crlFile`, its `ca.crl`) into haproxy;
    /// one line per push in `work/sync.log`.
    static func follow(
        _ cluster: KubernetesDoubleProcess, namespace: String, secret: String, work: String, certFile: String,
        crlFile: String? = nil
    ) throws -> Process {
        let sync = Process()
        sync.executableURL = URL(fileURLWithPath: try Tool.which("python3"))
        sync.arguments =
            [
                Fixtures.packageRoot + "/Tests/Gateway/haproxy_sync.py", "--api", cluster.url, "--token", "admin",
                "--cafile", cluster.caFile,
                "--namespace", namespace, "--secret", secret, "--socket", work + "/admin.sock", "--cert-file", certFile,
            ]
            + (crlFile.map { ["--crl-file", $0] } ?? [])
        _ = FileManager.default.createFile(atPath: work + "/sync.log", contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: work + "/sync.log"))
        sync.standardOutput = log
        sync.standardError = log
        try sync.run()
        return sync
    }
}
