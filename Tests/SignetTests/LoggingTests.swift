import Foundation
import Logging
import SignetLogging
import Synchronization
import Testing

/// The JSON log format: one object per line with the fixed fields and the metadata, and the request id on every
/// line a request causes.
@Suite("logging")
struct LoggingTests {
    @Test("a JSON line: time, level, message, logger, source, metadata at the top level, the request id from the task")
    func jsonLine() async throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "signet") { label in
            JSONLogHandler(label: label, metadataProvider: RequestIdentity.metadataProvider) { line in
                lines.withLock { $0.append(line) }
            }
        }
        logger[metadataKey: "replica"] = "signet-0"
        RequestIdentity.$current.withValue("req-1") {
            logger.info(
                "certificate issued",
                metadata: ["serial": "0a1b", "names": .array(["a.example.com", "b.example.com"])])
        }
        logger.warning("no request \"here\"\nsecond line")
        let written = lines.withLock { $0 }
        #expect(
            written.count == 2 && written.allSatisfy { $0.hasSuffix("\n") && $0.dropLast().contains("\n") == false })
        let first = try #require(try JSONSerialization.jsonObject(with: Data(written[0].utf8)) as? [String: Any])
        #expect(first["message"] as? String == "certificate issued" && first["level"] as? String == "info")
        #expect(first["requestId"] as? String == "req-1" && first["serial"] as? String == "0a1b")
        #expect(first["names"] as? [String] == ["a.example.com", "b.example.com"])
        #expect(first["replica"] as? String == "signet-0" && first["logger"] as? String == "signet")
        let time = try #require(first["time"] as? String)
        #expect(try Date(time, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)) != nil)
        let second = try #require(try JSONSerialization.jsonObject(with: Data(written[1].utf8)) as? [String: Any])
        #expect(second["requestId"] == nil && second["message"] as? String == "no request \"here\"\nsecond line")
    }

    @Test(
        "signet serve with log.format json: every line is a JSON object, and an issuance is logged with its serial, requester and the request id the answer carried"
    )
    func serveLogsJSON() throws {
        let server = try ServerProcess(environment: ["SIGNET_LOG_FORMAT": "json"])
        defer { server.stop() }
        let token = try server.createToken(name: "logs", allow: ["*.example.com"])
        try JSONSerialization.data(withJSONObject: ["csr": try Fixtures.csr(dnsNames: ["logs.example.com"])])
            .write(to: URL(fileURLWithPath: server.dataDirectory + "/body.json"))
        let answer = try Tool.run(
            "curl",
            [
                "-s", "-D", server.dataDirectory + "/headers", "--max-time", "10", "--cacert", server.rootCertificate,
                "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json", "--data-binary",
                "@" + server.dataDirectory + "/body.json", server.url + "/v1/certificates",
            ])
        let issued = try #require(try JSONSerialization.jsonObject(with: Data(answer.output.utf8)) as? [String: Any])
        let serial = try #require(issued["serial"] as? String)
        let headers = try String(contentsOfFile: server.dataDirectory + "/headers", encoding: .utf8)
        let requestID = try #require(
            headers.split(separator: "\r\n").first { $0.lowercased().hasPrefix("signet-request-id:") }
        ).split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)
        let lines = server.logText.split(separator: "\n")
        #expect(lines.count > 1)
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objects.count == lines.count, "every line is one JSON object: \(lines.prefix(3))")
        #expect(objects.allSatisfy { $0["time"] is String && $0["level"] is String && $0["message"] is String })
        let line = objects.first {
            $0["message"] as? String == "certificate issued" && $0["serial"] as? String == serial
        }
        #expect(line?["requester"] as? String == "token:logs")
        #expect(line?["requestId"] as? String == requestID, "the line carries the id the answer had: \(requestID)")
    }
}
