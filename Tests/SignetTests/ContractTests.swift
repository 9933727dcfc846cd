import Foundation
import SignetOpenAPI
import SignetServer
import Testing

/// api/openapi.yaml says what the server enforces, and the server does what it says: Schemathesis, driven by the
/// document alone with a valid token (as a new user would try the API), against a live `signet serve`.
@Suite("the API contract", .serialized)
struct ContractTests {
    @Test("date-times: answers in UTC with whole seconds; queries read with Z or an offset, with or without a fraction")
    func dateTimes() throws {
        let transcoder = RFC3339DateTranscoder()
        #expect(try transcoder.encode(Date(timeIntervalSince1970: 1_796_119_200.999)) == "2026-12-01T10:00:00Z")
        #expect(try transcoder.encode(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        for (text, seconds) in [
            ("2026-12-01T10:00:00Z", 1_796_119_200.0), ("2026-12-01T10:00:00.5+01:00", 1_796_115_600.5),
            ("2026-12-01T10:00:00-05:30", 1_796_139_000.0), ("2026-12-01T10:00:00.123456Z", 1_796_119_200.123456),
            // RFC 3339 allows any offset up to ±23:59 (Schemathesis sends such); Foundation's style stops at ±18:00.
            ("2026-12-01T10:00:00+23:43", 1_796_119_200.0 - 85_380), ("2026-12-01T10:00:00.25-23:59", 1_796_205_540.25),
            ("2026-12-01t10:00:00z", 1_796_119_200.0),
        ] {
            let decoded = try transcoder.decode(text).timeIntervalSince1970
            #expect(abs(decoded - seconds) < 0.000_001, "\(text): \(decoded)")
        }
        for text in [
            "2026-12-01T10:00:00", "2026-12-01", "garbage", "", "2026-13-01T10:00:00Z", "2026-12-01T10:00:00+24:00",
            "2026-12-01T10:00:00+01:60", "2026-12-01T10:00:00+0a:00", "2026-12-01T10:00:00ZZ", "+01:00",
            "2026-12-01T10:00:00.Z", "2026-12-01T10:00:00junkZ", "2026-12-01x10:00:00Z",
        ] {
            #expect(throws: (any Error).self, "\(text)") { try transcoder.decode(text) }
        }
    }

    @Test("every path's methods in the document are the ones the server answers; any other method is 405 with Allow")
    func declaredMethods() throws {
        let script = """
            import sys, yaml
            document = yaml.safe_load(open(sys.argv[1]))
            for path, operations in sorted(document["paths"].items()):
                methods = sorted(m.upper() for m in operations if m in ("get", "put", "post", "delete", "patch", "head", "options", "trace"))
                print(path + " " + ",".join(methods))
            """
        let listed = try Tool.run("python3", ["-c", script, Fixtures.packageRoot + "/api/openapi.yaml"])
        #expect(listed.succeeded, "\(listed.error)")
        let table = APIEdgeMiddleware.declaredMethods.map {
            "/" + $0.template.joined(separator: "/") + " " + $0.methods.sorted().joined(separator: ",")
        }
        #expect(table.sorted() == listed.output.split(separator: "\n").map(String.init).sorted())

        let server = try ServerProcess()
        defer { server.stop() }
        let answer = try Tool.run(
            "curl",
            [
                "-s", "-i", "-X", "TRACE", "--cacert", server.rootCertificate,
                server.url + "/v1/managed-certificates/web",
            ])
        #expect(
            answer.output.hasPrefix("HTTP/1.1 405") && answer.output.contains("Allow: DELETE, GET, PATCH"),
            "\(answer.output)")
        #expect(answer.output.contains("application/problem+json") && answer.output.contains("method-not-allowed"))
    }

    @Test(
        "Schemathesis finds no server error, no schema-valid request refused, no schema-invalid request accepted, no undeclared method answered",
        .timeLimit(.minutes(5)))
    func fuzzedAgainstTheDocument() throws {
        let server = try ServerProcess()
        defer { server.stop() }
        let token = try server.createToken(
            name: "fuzzer", allow: ["*.example.com", "example.com"],
            extra: ["--profiles", "server,client,server-client"])
        // A fixed seed makes a failure reproducible (and CI repeatable); SIGNET_FUZZ_SEED explores others.
        let seed = ProcessInfo.processInfo.environment["SIGNET_FUZZ_SEED"] ?? "20261201"
        // Forty-five seconds on one worker: the suite runs beside it, on the same two cores.
        let seconds = ProcessInfo.processInfo.environment["SIGNET_FUZZ_SECONDS"] ?? "45"
        // `python3 -m schemathesis.cli` is `st`, found wherever pip put the package, PATH or not.
        let run = try Tool.run(
            "python3",
            [
                "-m", "schemathesis.cli", "--config-file", Fixtures.packageRoot + "/Tests/Fuzz/schemathesis.toml",
                "run", Fixtures.packageRoot + "/api/openapi.yaml",
                "--url", server.url, "--tls-verify", server.rootCertificate, "-H", "Authorization: Bearer \(token)",
                "--checks", "not_a_server_error,positive_data_acceptance,negative_data_rejection,unsupported_method",
                "--phases", "examples,coverage,fuzzing", "--max-time", seconds, "--seed", seed, "--workers", "1",
                "--no-color",
            ])
        let summary = run.output.split(separator: "\n").suffix(40).joined(separator: "\n")
        #expect(
            run.succeeded,
            "st exited \(run.status) (seed \(seed)):\n\(run.output.suffix(6000))\(run.error.suffix(2000))")
        #expect(run.output.contains("Fuzzing") && !run.output.contains("❌"), "\(summary)")
        #expect(!server.logText.contains("status=500"), "\(server.logText.suffix(2000))")
    }
}
