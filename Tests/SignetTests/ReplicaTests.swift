import Foundation
import Testing

/// Several `signet serve` processes on one PostgreSQL database, as `deploy/overlays/ha` runs them: each test has a
/// PostgreSQL server of its own (one of them restarts it), one CA directory and one ledger key shared by the replicas.
@Suite("several replicas on one PostgreSQL", .serialized)
struct ReplicaTests {
    /// The replicas, their database and what they share.
    final class ReplicaSet: @unchecked Sendable {
        // @unchecked: replicas are started and stopped only by the test that owns the set.
        let postgres: PostgresServer
        let databaseName: String
        let directory: String
        let environment: [String: String]
        var replicas: [ServerProcess] = []

        init(count: Int, arguments: [String] = [], environment extra: [String: String] = [:]) throws {
            postgres = try PostgresServer()
            databaseName = try postgres.makeDatabase()
            directory = try Fixtures.temporaryDirectory("signet-replicas")
            let created = try Tool.run(
                Fixtures.signetBinary, ["ca", "init", "--dir", directory + "/ca", "--org", "Replica Corp"])
            guard created.succeeded else { throw ServerProcess.ServerFailed(log: created.error) }
            let key = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            environment = [
                "SIGNET_DATABASE": postgres.url(databaseName), "SIGNET_CA_DIR": directory + "/ca",
                "SIGNET_LEDGER_KEY": key,
            ].merging(extra) { $1 }
            for index in 0..<count {
                replicas.append(
                    try ServerProcess(
                        dataDirectory: directory + "/replica-\(index)", arguments: arguments, environment: environment))
            }
        }

        var rootCertificate: String { directory + "/ca/root.crt" }

        /// An issuance request for `name` (a fresh key's CSR), as a file for curl's --data-binary.
        func requestBody(for name: String) throws -> String {
            let path = directory + "/body-\(name).json"
            try JSONSerialization.data(withJSONObject: ["csr": try Fixtures.csr(dnsNames: [name])])
                .write(to: URL(fileURLWithPath: path))
            return path
        }

        /// A token in the shared ledger, made with the CLI as an operator would.
        func createToken(name: String, allow: [String], extra: [String] = []) throws -> String {
            let result = try Tool.run(
                Fixtures.signetBinary,
                ["token", "create", "--name", name, "--database", postgres.url(databaseName)]
                    + allow.flatMap { ["--allow", $0] } + extra, environment: environment)
            guard result.succeeded else { throw ServerProcess.ServerFailed(log: result.error) }
            return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func sql(_ text: String) throws -> String { try postgres.query(databaseName, text) }

        func stop() {
            for replica in replicas { replica.stop() }
        }

        /// Signet's API on `replica` with curl: the status and the JSON answer.
        func api(
            _ replica: ServerProcess, _ method: String, _ path: String, _ body: [String: Any]? = nil, token: String
        ) throws -> (status: Int, json: [String: Any]) {
            var arguments = [
                "-s", "--max-time", "20", "--cacert", rootCertificate, "-X", method, "-w", "\n%{http_code}", "-H",
                "Authorization: Bearer \(token)",
            ]
            var input: String?
            if let body {
                arguments += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
                input = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
            }
            let result = try Tool.run("curl", arguments + [replica.url + path], input: input)
            let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
            let json =
                (try? JSONSerialization.jsonObject(with: Data(lines.dropLast().joined(separator: "\n").utf8)))
                as? [String: Any] ?? [:]
            return (Int(lines.last ?? "") ?? 0, json)
        }
    }

    /// One issuance over HTTPS with curl: the status, the serial if one was issued, and the content type.
    struct Answer: Sendable {
        let status: Int
        let serial: String?
        let contentType: String
        var retryAfter = ""
        /// curl's exit code and message when no answer came (status 0): 7 refused, 28 timed out, 52/56 cut off.
        var failure = ""
    }

    static func issue(at replica: ServerProcess, token: String, body: String, root: String, maxTime: Int = 5) -> Answer
    {
        guard
            let result = try? Tool.run(
                "curl",
                [
                    "-s", "--max-time", String(maxTime), "--cacert", root, "-H", "Authorization: Bearer \(token)",
                    "-H", "Content-Type: application/json", "--data-binary", "@" + body,
                    "-w", "\n%{http_code} %header{retry-after} %{content_type}", replica.url + "/v1/certificates",
                ])
        else { return Answer(status: 0, serial: nil, contentType: "") }
        let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
        let trailer = (lines.last ?? "").split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        let failure = result.succeeded ? "" : "curl exit \(result.status): \(result.error)"
        let object =
            (try? JSONSerialization.jsonObject(with: Data(lines.dropLast().joined(separator: "\n").utf8)))
            as? [String: Any]
        return Answer(
            status: Int(trailer.first ?? "") ?? 0, serial: object?["serial"] as? String,
            contentType: trailer.count > 2 ? String(trailer[2]) : "",
            retryAfter: trailer.count > 1 ? String(trailer[1]) : "", failure: failure)
    }

    @Test(
        "three replicas: issuance spread over all three; kill -9 of one mid-burst loses no certificate a client received, the others carry on; every row whole, every serial once"
    )
    func burstAcrossReplicas() throws {
        let set = try ReplicaSet(count: 3)
        defer { set.stop() }
        let token = try set.createToken(name: "burst", allow: ["*.example.com"])
        let body = try set.requestBody(for: "burst.example.com")

        // Six clients, two per replica, issue for four seconds; replica 0 is killed after one and a half.
        let received = LockedSerials()
        let perReplica = LockedValue([Int](repeating: 0, count: 3))
        let afterKill = LockedValue([Int](repeating: 0, count: 3))
        let killed = LockedFlag()
        let started = Date()
        DispatchQueue.global().asyncAfter(deadline: .now() + 1.5) {
            set.replicas[0].kill(signal: SIGKILL)
            killed.set()
        }
        DispatchQueue.concurrentPerform(iterations: 6) { client in
            let index = client % 3
            while Date().timeIntervalSince(started) < 4 {
                let wasKilled = killed.isSet
                let answer = Self.issue(at: set.replicas[index], token: token, body: body, root: set.rootCertificate)
                guard answer.status == 201, let serial = answer.serial else {
                    if index == 0 { return }
                    continue
                }
                received.add(serial)
                perReplica.update { $0[index] += 1 }
                if wasKilled { afterKill.update { $0[index] += 1 } }
            }
        }
        set.replicas[0].process.waitUntilExit()
        #expect(set.replicas[0].process.terminationReason == .uncaughtSignal)
        #expect(perReplica.value.allSatisfy { $0 > 0 }, "every replica issued: \(perReplica.value)")
        #expect(afterKill.value[1] > 0 && afterKill.value[2] > 0, "the others carried on: \(afterKill.value)")

        let stored = Set(
            try set.sql("SELECT serial FROM certificates WHERE requester = 'token:burst'").split(separator: "\n")
                .map(String.init))
        let lost = received.all.subtracting(stored)
        #expect(lost.isEmpty, "certificates handed out but not in the ledger: \(lost)")
        #expect(
            try set.sql(
                """
                SELECT count(*) FROM certificates c WHERE c.requester = 'token:burst' AND (
                    NOT EXISTS (SELECT 1 FROM certificate_names n WHERE n.certificate_id = c.id)
                    OR NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.subject = c.serial AND e.outcome = 'success'))
                """) == "0", "no half-written issuance")
        #expect(
            try set.sql("SELECT count(*) = count(DISTINCT serial) FROM certificates") == "t",
            "a serial is recorded once")
        print(
            "replicas: \(received.count) certificates, per replica \(perReplica.value), after the kill \(afterKill.value)"
        )
    }

    @Test(
        "PostgreSQL restarted under load: while it is down requests get 503 problems with Retry-After and /readyz fails; once it is back they succeed, and nothing half-written remains"
    )
    func databaseRestart() throws {
        let set = try ReplicaSet(count: 2)
        defer { set.stop() }
        let token = try set.createToken(name: "restart", allow: ["*.example.com"])
        let body = try set.requestBody(for: "restart.example.com")
        for replica in set.replicas {
            #expect(Self.issue(at: replica, token: token, body: body, root: set.rootCertificate).status == 201)
        }

        // Two clients issue throughout; PostgreSQL stops a second in, stays down for a few seconds, and comes back.
        let answers = LockedValue([(at: Date, answer: Answer)]())
        let done = LockedFlag()
        let worker = DispatchGroup()
        for client in 0..<2 {
            DispatchQueue.global().async(group: worker) {
                while !done.isSet {
                    let answer = Self.issue(
                        at: set.replicas[client], token: token, body: body, root: set.rootCertificate, maxTime: 30)
                    answers.update { $0.append((Date(), answer)) }
                }
            }
        }
        Thread.sleep(forTimeInterval: 1)
        let stopped = Date()  // refusals may begin as soon as it starts shutting down
        try set.postgres.stop()
        Thread.sleep(forTimeInterval: 2)
        for replica in set.replicas {
            let ready = try Tool.run(
                "curl",
                [
                    "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", "--cacert", set.rootCertificate,
                    replica.url + "/readyz",
                ])
            #expect(ready.output == "503", "readiness reflects the database")
        }
        Thread.sleep(forTimeInterval: 2)
        try set.postgres.start()
        let restarted = Date()
        let deadline = Date().addingTimeInterval(40)
        while Date() < deadline,
            Set(answers.value.filter { $0.at > restarted && $0.answer.status == 201 }.map(\.answer.serial)).count < 4
        {
            Thread.sleep(forTimeInterval: 0.2)
        }
        done.set()
        worker.wait()

        let all = answers.value
        let statuses = Set(all.map(\.answer.status))
        let unanswered = all.filter { $0.answer.status == 0 }.map {
            "\(String(format: "%.1f", $0.at.timeIntervalSince(stopped))) s after the stop: \($0.answer.failure)"
        }
        #expect(
            statuses.isSubset(of: [201, 503]), "only certificates and 503 problems: \(statuses); \(unanswered)")
        let refused = all.filter { $0.answer.status == 503 }
        #expect(!refused.isEmpty, "requests while PostgreSQL was down were refused")
        #expect(
            refused.allSatisfy {
                $0.answer.contentType.hasPrefix("application/problem+json") && !$0.answer.retryAfter.isEmpty
            }, "503s are problems with Retry-After")
        #expect(
            refused.allSatisfy { $0.at > stopped && $0.at.timeIntervalSince(stopped) < 30 },
            "refused only while it was down")
        let recovered = all.filter { $0.at > restarted && $0.answer.status == 201 }
        #expect(recovered.count >= 4, "issuing again once PostgreSQL is back")
        for replica in set.replicas { #expect(replica.process.isRunning, "the replicas kept serving") }
        let stored = Set(try set.sql("SELECT serial FROM certificates").split(separator: "\n").map(String.init))
        let received = Set(all.compactMap(\.answer.serial))
        #expect(received.subtracting(stored).isEmpty, "every certificate a client received is in the ledger")
        print(
            "database restart: \(all.count) requests, \(refused.count) refused with 503, \(recovered.count) issued after the restart within \(String(format: "%.1f", (recovered.first?.at ?? restarted).timeIntervalSince(restarted))) s"
        )
        #expect(
            try set.sql(
                """
                SELECT count(*) FROM certificates c WHERE NOT EXISTS
                    (SELECT 1 FROM audit_events e WHERE e.subject = c.serial AND e.outcome = 'success')
                """) == "0", "no half-written issuance")
    }

    @Test(
        "kill -9 of the replica renewing a managed certificate (signed, not yet delivered): its claim lapses, another replica delivers that certificate, and none is issued twice"
    )
    func renewalTakenOver() throws {
        let cluster = try KubernetesDoubleProcess()
        defer { cluster.stop() }
        let configuration = try Fixtures.temporaryDirectory("signet-replica-config") + "/signet.yaml"
        try """
        clusters:
          - name: double
            kubeconfig: \(cluster.kubeconfig("admin"))
        """.write(to: configuration)
        let set = try ReplicaSet(
            count: 3, arguments: ["--config", configuration], environment: ["SIGNET_RENEWAL_CLAIM_SECONDS": "6"])
        defer { set.stop() }
        let token = try set.createToken(
            name: "platform", allow: ["*.example.com"],
            extra: ["--target", "double/istio-system/*", "--max-duration", "1d"])
        func status(on replica: ServerProcess) throws -> [String: Any] {
            try set.api(replica, "GET", "/v1/managed-certificates/crash", token: token).json["status"]
                as? [String: Any] ?? [:]
        }
        func issued() throws -> [String] {
            try set.sql("SELECT serial FROM certificates WHERE requester = 'managed:crash' ORDER BY id")
                .split(separator: "\n").map(String.init)
        }
        #expect(
            try set.api(
                set.replicas[0], "POST", "/v1/managed-certificates",
                [
                    "name": "crash", "dnsNames": ["crash.example.com"], "duration": "1h",
                    "target": ["cluster": "double", "namespace": "istio-system", "secretName": "crash-tls"],
                ], token: token
            ).status == 201)
        try ManagedDeliveryTests.poll("the first delivery", seconds: 30) {
            try status(on: set.replicas[1])["ready"] as? Bool == true
        }
        let first = try #require(try issued().first)
        #expect(try issued().count == 1, "one replica renewed it")

        // One replica watches the cluster's Secrets: the one that took its lease (within a refresh, 5 s).
        var watching: [Int] = []
        try ManagedDeliveryTests.poll("a replica watching the cluster's Secrets", seconds: 15) {
            watching = set.replicas.indices.filter {
                set.replicas[$0].logText.contains("this replica holds its lease")
            }
            return !watching.isEmpty
        }
        #expect(watching.count == 1, "one replica watches the cluster's Secrets: \(watching)")

        // A forced renewal with every API call taking 8 s: whichever replica claims it signs, then is stuck writing
        // the Secret; that replica is killed there.
        try cluster.admin("faults", ["latency_ms": 8000])
        #expect(
            try set.api(set.replicas[2], "POST", "/v1/managed-certificates/crash/renew", token: token).status == 202)
        var signed: [String] = []
        try ManagedDeliveryTests.poll("the renewal's certificate", seconds: 30) {
            signed = try issued()
            return signed.count == 2
        }
        let second = signed[1]
        let renewing = try #require(
            set.replicas.firstIndex { $0.logText.contains("serial=\(second)") }, "the replica that signed it logged it")
        set.replicas[renewing].kill(signal: SIGKILL)
        set.replicas[renewing].process.waitUntilExit()
        try cluster.admin("faults", ["latency_ms": 0])
        #expect(
            ManagedDeliveryTests.annotations(try cluster.secret("istio-system", "crash-tls"))["signet.dev/serial"]
                == first, "the kill came before the Secret was written")

        let survivor = set.replicas[(renewing + 1) % 3]
        let deadline = Date().addingTimeInterval(40)
        var last: [String: Any] = [:]
        while Date() < deadline {
            last = try status(on: survivor)
            if last["serial"] as? String == second, last["ready"] as? Bool == true { break }
            Thread.sleep(forTimeInterval: 0.25)
        }
        #expect(last["serial"] as? String == second && last["ready"] as? Bool == true, "\(last)")
        #expect(try issued() == [first, second], "no third certificate")
        #expect(
            ManagedDeliveryTests.annotations(try cluster.secret("istio-system", "crash-tls"))["signet.dev/serial"]
                == second)
        let resumedBy = set.replicas.indices.filter {
            $0 != renewing && set.replicas[$0].logText.contains("resuming an interrupted renewal")
        }
        #expect(resumedBy.count == 1, "exactly one other replica resumed it: \(resumedBy)")

        // The Secret deleted (and its key with it): whichever replica watches the cluster now (the killed one's lease,
        // if it held it, has lapsed and been taken over) has a certificate delivered again, once.
        #expect(try cluster.kubectl(["delete", "secret", "crash-tls", "-n", "istio-system"]).succeeded)
        try ManagedDeliveryTests.poll("the Secret delivered again", seconds: 40) {
            let serial = ManagedDeliveryTests.annotations(try cluster.secret("istio-system", "crash-tls"))[
                "signet.dev/serial"]
            return serial != nil && serial != second
        }
        Thread.sleep(forTimeInterval: 2)
        #expect(try issued().count == 3, "one new certificate for the deleted Secret, not one per replica")

    }

    @Test(
        "a revocation made on one replica reaches the others within seconds: their CRL lists it and their OCSP answers (a cached good one included) say revoked"
    )
    func revocationAcrossReplicas() throws {
        let set = try ReplicaSet(count: 2)
        defer { set.stop() }
        let token = try set.createToken(name: "revoker", allow: ["*.example.com"])
        let work = set.directory
        let issued = try set.api(
            set.replicas[1], "POST", "/v1/certificates", ["csr": try Fixtures.csr(dnsNames: ["gone.example.com"])],
            token: token)
        #expect(issued.status == 201, "\(issued.json)")
        let serial = try #require(issued.json["serial"] as? String)
        try (try #require(issued.json["certificate"] as? String)).write(to: work + "/leaf.pem")
        func ocsp(_ replica: ServerProcess) throws -> String {
            try Tool.run(
                "openssl",
                [
                    "ocsp", "-issuer", work + "/ca/intermediate.crt", "-CAfile", set.rootCertificate, "-cert",
                    work + "/leaf.pem", "-url", replica.url + "/ocsp", "-no_nonce", "-timeout", "10",
                ]
            ).output
        }
        func crlText(_ replica: ServerProcess) throws -> String {
            let keyID =
                try Tool.run(
                    "openssl", ["x509", "-in", work + "/ca/intermediate.crt", "-noout", "-ext", "subjectKeyIdentifier"]
                ).output.split(separator: "\n").last.map { $0.replacingOccurrences(of: ":", with: "") }?
                .trimmingCharacters(in: .whitespaces).lowercased() ?? ""
            let pem = try Tool.run(
                "curl", ["-sf", "--cacert", set.rootCertificate, replica.url + "/crl/\(keyID).pem"]
            ).output
            try pem.write(to: work + "/replica.crl")
            return try Tool.run("openssl", ["crl", "-in", work + "/replica.crl", "-noout", "-text"]).output.uppercased()
        }
        #expect(try ocsp(set.replicas[1]).contains(": good"), "replica 1 has answered (and cached) good")
        #expect(!(try crlText(set.replicas[1]).contains(serial.uppercased())))

        #expect(
            try set.api(
                set.replicas[0], "POST", "/v1/certificates/\(serial)/revoke", ["reason": "keyCompromise"], token: token
            ).status == 200)
        try ManagedDeliveryTests.poll("replica 1's CRL and OCSP saying revoked", seconds: 10) {
            try crlText(set.replicas[1]).contains(serial.uppercased()) && ocsp(set.replicas[1]).contains(": revoked")
        }
        #expect(set.replicas[1].logText.contains("CRL published by another replica taken up"))
    }
}
