// signet-bench: the in-process parts of the benchmark (bench/run.sh drives the rest).
//   signet-bench csrs COUNT DIR        pre-generate P-256 CSRs as request bodies for Signet and for cfssl
//   signet-bench ceiling SECONDS       CSR verification + certificate signing per second on all cores
//   signet-bench ledger ROWS PATH      fill a ledger with ROWS certificates and time the auditor's queries; a
//                                      postgres:// URL instead of PATH times them on a ledger bench/run.sh filled
//   signet-bench acme DIRECTORY_URL CA_FILE CLIENTS SECONDS LABEL   the ACME order flow, CLIENTS at once
//   signet-bench floor PORT            a bare Hummingbird 2 server on loopback (GET /healthz answers "ok"): the HTTP
//                                      stack's own cost per request, the floor under every Signet figure
import Crypto
import Foundation
import Hummingbird
import Logging
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetPostgres
import SwiftASN1
import X509

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "csrs":
    try generateRequests(
        count: Int(arguments.dropFirst().first ?? "2000") ?? 2000, directory: arguments.dropFirst(2).first ?? ".")
case "ceiling":
    try await measureCeiling(seconds: Double(arguments.dropFirst().first ?? "5") ?? 5)
case "ledger":
    let location = arguments.dropFirst(2).first ?? "bench-ledger.sqlite"
    let rows = Int(arguments.dropFirst().first ?? "1000000") ?? 1_000_000
    if location.hasPrefix("postgres://") {
        let ledger = try await PostgresLedger(
            PostgresConnectionSettings(url: location), logger: Logger(label: "signet-bench"))
        try await measureQueries(ledger, expecting: rows)
        await ledger.close()
    } else {
        try await measureLedger(rows: rows, path: location)
    }
case "acme":
    let values = Array(arguments.dropFirst())
    guard values.count == 5, let clients = Int(values[2]), let seconds = Double(values[3]) else {
        print("usage: signet-bench acme DIRECTORY_URL CA_FILE CLIENTS SECONDS LABEL")
        exit(2)
    }
    try await runACMELoad(
        directoryURL: values[0], caFile: values[1], clients: clients, seconds: seconds, label: values[4])
case "floor":
    let port = Int(arguments.dropFirst().first ?? "") ?? 8080
    let router = Router()
    router.get("/healthz") { _, _ in "ok" }
    let floor = Application(
        router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
        logger: Logger(label: "signet-bench-floor"))
    try await floor.runService()
default:
    print(
        "usage: signet-bench csrs COUNT DIR | ceiling SECONDS | ledger ROWS PATH | acme DIRECTORY_URL CA_FILE CLIENTS SECONDS LABEL | floor PORT"
    )
    exit(2)
}

func csrPEM(host: String) throws -> String {
    let key = P256.Signing.PrivateKey()
    var attributes = CertificateSigningRequest.Attributes()
    attributes.insert(
        try .init(
            ExtensionRequest(extensions: try Certificate.Extensions { SubjectAlternativeNames([.dnsName(host)]) })))
    return try CertificateSigningRequest(
        version: .v1, subject: try DistinguishedName { CommonName(host) }, privateKey: .init(key),
        attributes: attributes, signatureAlgorithm: .ecdsaWithSHA256
    ).serializeAsPEM().pemString
}

/// One JSON body a line: the same CSRs in each service's request shape.
func generateRequests(count: Int, directory: String) throws {
    var signet = "", cfssl = ""
    for index in 0..<count {
        let pem = try csrPEM(host: "bench-\(index).example.com")
        let escaped = String(decoding: try JSONEncoder().encode(pem), as: UTF8.self)
        signet += #"{"csr":\#(escaped)}"# + "\n"
        cfssl += #"{"certificate_request":\#(escaped)}"# + "\n"
    }
    try signet.write(toFile: directory + "/signet-bodies.txt", atomically: true, encoding: .utf8)
    try cfssl.write(toFile: directory + "/cfssl-bodies.txt", atomically: true, encoding: .utf8)
}

/// The pipeline without HTTP or SQLite: parse and verify the CSR, apply the rules, build and sign the certificate.
func measureCeiling(seconds: Double) async throws {
    let directory = NSTemporaryDirectory() + "signet-bench-ca-\(getpid())"
    try await CAInitializer().create(in: CADirectory(path: directory), overwrite: true)
    let ca = try await CALoader.load(
        from: CADirectory(path: directory),
        signer: FileKeySigner(path: directory + "/intermediate.key", passphrase: nil))
    let requests = try (0..<64).map { try csrPEM(host: "bench-\($0).example.com") }
    let policy = IssuancePolicy(allowedNames: [try NamePattern("*.example.com")])
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for worker in 0..<cores {
            group.addTask {
                var done = 0
                while ContinuousClock.now < deadline {
                    let plan = try IssuanceRules.plan(
                        IssuanceRequest(csrPEM: requests[(done + worker) % requests.count]), policy: policy,
                        now: Date(), issuerNotAfter: ca.certificate.notValidAfter)
                    _ = try await LeafCertificateFactory.issue(
                        plan, by: ca, serial: SerialNumbers.random(),
                        validity: LeafCertificateFactory.validity(for: plan.lifetime, now: Date()))
                    done += 1
                }
                return done
            }
        }
        return try await group.reduce(0, +)
    }
    print(String(format: "CEILING cores=%d issuances_per_second=%.0f", cores, Double(total) / seconds))
    try? FileManager.default.removeItem(atPath: directory)
}

/// Fills a ledger through its public API (concurrent writers, so group commit batches them), then times queries.
func measureLedger(rows: Int, path: String) async throws {
    let ledger = try CertificateLedger(path: path, durability: .normal)
    let existing = try await ledger.certificateCount()
    let start = Date()
    let base = Date().addingTimeInterval(-365 * 86_400)
    if existing < rows {
        let writers = 64
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var index = existing + writer
                    while index < rows {
                        // Spread over a year of issuance, 90-day lifetimes, 200 requesters, names in 1000 domains.
                        let issued = base.addingTimeInterval(Double(index) * 365 * 86_400 / Double(rows))
                        let host = "host-\(index).team-\(index % 1000).example.com"
                        let entry = CertificateEntry(
                            serial: String(format: "%040x", index), issuerKeyID: "bench", subject: "CN=\(host)",
                            dnsNames: [host], ipAddresses: [], publicKeySHA256: "pk", csrSHA256: "csr",
                            profile: .server,
                            notBefore: issued, notAfter: issued.addingTimeInterval(90 * 86_400),
                            requester: "token:team-\(index % 200)",
                            issuedAt: issued, der: [UInt8](repeating: 0x30, count: 600)
                        )
                        try await ledger.record(
                            entry,
                            event: AuditEvent(
                                at: issued, actor: entry.requester, action: "certificate.issue", outcome: .success,
                                subject: entry.serial))
                        index += writers
                    }
                }
            }
            try await group.waitForAll()
        }
        print(String(format: "LEDGER filled rows=%d seconds=%.1f", rows, Date().timeIntervalSince(start)))
    }
    try await measureQueries(ledger, expecting: rows)
}

/// The auditor's queries and the metrics gauges' query on a filled ledger, each the median of seven.
func measureQueries(_ ledger: any IssuedCertificateStore & StoreHealth, expecting rows: Int) async throws {
    let held = try await ledger.summary(now: Date()).counts.values.reduce(0, +)
    guard held >= rows else {
        print("the ledger holds \(held) certificates, not \(rows): fill it first (bench/run.sh does)")
        exit(1)
    }
    let now = Date()
    func time(_ label: String, _ configure: (inout CertificateQuery) -> Void) async throws {
        var query = CertificateQuery()
        configure(&query)
        var samples: [Double] = []
        var count = 0
        for _ in 0..<7 {
            let begin = ContinuousClock.now
            count = try await ledger.certificates(matching: query, now: now).entries.count
            let elapsed = ContinuousClock.now - begin
            samples.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
        }
        samples.sort()
        print(String(format: "QUERY %@ median_ms=%.2f max_ms=%.2f results=%d", label, samples[3], samples[6], count))
    }
    try await time("newest-100") { _ in }
    try await time("dnsName-exact") { $0.dnsName = "host-777777.team-777.example.com" }
    try await time("dnsName-no-match") { $0.dnsName = "nothing.example.org" }
    try await time("status-valid") { $0.status = .valid }
    try await time("status-expired") { $0.status = .expired }
    try await time("expiringBefore-7d") {
        $0.expiringBefore = now.addingTimeInterval(7 * 86_400)
        $0.status = .valid
    }
    try await time("issuedAfter-1d") { $0.issuedAfter = now.addingTimeInterval(-86_400) }
    try await time("issuedBefore-300d-ago") { $0.issuedBefore = now.addingTimeInterval(-300 * 86_400) }
    try await time("requester") { $0.requester = "token:team-42" }
    try await time("requester-and-expiring") {
        $0.requester = "token:team-42"
        $0.expiringBefore = now.addingTimeInterval(30 * 86_400)
    }
    // The metrics gauges' query, measured like the listings: the median of seven.
    var samples: [Double] = []
    for _ in 0..<7 {
        let begin = ContinuousClock.now
        _ = try await ledger.summary(now: now)
        let elapsed = ContinuousClock.now - begin
        samples.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
    }
    samples.sort()
    print(String(format: "QUERY metrics-summary median_ms=%.2f max_ms=%.2f", samples[3], samples[6]))
}
