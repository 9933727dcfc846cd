import Foundation
import GRDB
import Testing

/// The `signet` binary as users run it: serve with no configuration, the CLI as a client, signals.
@Suite("signet serve and the CLI", .serialized)
struct ServeProcessTests {
    @Test("zero configuration: a development CA, HTTPS, tokens from the CLI, issue writes tls.crt/ca.crt/tls.key")
    func zeroConfiguration() throws {
        let server = try ServerProcess()
        defer { server.stop() }
        #expect(server.logText.contains("DEVELOPMENT CA"))
        let token = try server.createToken(name: "team-a", allow: ["*.example.com", "bookinfo.com"])
        #expect(token.hasPrefix("sgt_"))

        let out = server.dataDirectory + "/out"
        let issued = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "httpbin.example.com", "--out", out,
        ])
        #expect(issued.succeeded, "\(issued.error)")
        let keyMode = try FileManager.default.attributesOfItem(atPath: out + "/tls.key")[.posixPermissions] as? Int
        #expect(keyMode == 0o600)
        #expect(try String(contentsOfFile: out + "/tls.key", encoding: .utf8).contains("BEGIN PRIVATE KEY"))
        let verify = try Tool.run(
            "openssl",
            ["verify", "-CAfile", out + "/ca.crt", "-untrusted", server.intermediateCertificate, out + "/tls.crt"])
        #expect(verify.succeeded, "\(verify.output)\(verify.error)")
        let matches =
            try Tool.run("openssl", ["x509", "-in", out + "/tls.crt", "-noout", "-pubkey"]).output
            == Tool.run("openssl", ["pkey", "-in", out + "/tls.key", "-pubout"]).output
        #expect(matches, "tls.key belongs to tls.crt")

        let refused = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "evil.com", "--out", server.dataDirectory + "/refused",
        ])
        #expect(!refused.succeeded)
        #expect(refused.error.contains("403") && refused.error.contains("evil.com"))

        let listed = try server.signet([
            "certs", "list", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
        ])
        #expect(listed.succeeded, "\(listed.error)")
        #expect(listed.output.contains("httpbin.example.com") && listed.output.contains("token:team-a"))
        let serial = try #require(
            issued.output.split(separator: "\n").first?.split(separator: " ").last.map(String.init))
        let shown = try server.signet([
            "certs", "show", serial, "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
        ])
        #expect(shown.output.contains("httpbin.example.com") && shown.output.contains("valid"))

        let tokens = try server.signet(["token", "list"])
        #expect(tokens.output.contains("team-a") && tokens.output.contains("active") && !tokens.output.contains(token))
        #expect(try server.signet(["token", "revoke", "team-a"]).succeeded)
        // The server's token cache lives one second: the revocation takes effect within it (polled, five seconds at most).
        var afterRevoke = try server.signet([
            "certs", "list", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
        ])
        let deadline = Date().addingTimeInterval(5)
        while afterRevoke.succeeded, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.2)
            afterRevoke = try server.signet([
                "certs", "list", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            ])
        }
        #expect(afterRevoke.error.contains("401") && afterRevoke.error.contains("revoked"), "\(afterRevoke.error)")
    }

    @Test("the API's TLS listener speaks TLS 1.2 and 1.3, and refuses 1.1 and 1.0")
    func tlsVersions() throws {
        let server = try ServerProcess()
        defer { server.stop() }
        func handshake(_ version: String) throws -> Tool.Result {
            // SECLEVEL=0 lets this client offer the old versions at all, so the refusal is the server's.
            try Tool.run(
                "openssl",
                [
                    "s_client", "-connect", "127.0.0.1:\(server.port)", version, "-cipher", "DEFAULT:@SECLEVEL=0",
                    "-CAfile", server.rootCertificate, "-servername", "localhost", "-brief",
                ], input: "")
        }
        for version in ["-tls1_2", "-tls1_3"] {
            let result = try handshake(version)
            #expect(
                result.succeeded && (result.output + result.error).contains("Verification: OK"),
                "\(version): \(result.error)")
        }
        for version in ["-tls1_1", "-tls1"] {
            let result = try handshake(version)
            #expect(
                !result.succeeded && !(result.output + result.error).contains("Verification: OK"),
                "\(version): \(result.output)\(result.error)")
        }
    }

    // The body bounds itself (start 30 s, renewal 45 s, stop 20 s); the limit is a backstop. It counts from when the
    // test is scheduled, and under the parallel suite a synchronous test can wait a minute for a thread: one minute
    // failed a run whose renewal came on time.
    @Test("the server's own TLS certificate is renewed while it runs, without a restart", .timeLimit(.minutes(4)))
    func ownCertificateRenewal() throws {
        // A 60-second certificate, backdated a minute, is due for renewal about 20 seconds after it is issued.
        let server = try ServerProcess(environment: ["SIGNET_MAX_DURATION": "60s", "SIGNET_DEFAULT_DURATION": "60s"])
        defer { server.stop() }
        func servedSerial() throws -> String {
            let handshake = try Tool.run(
                "openssl",
                [
                    "s_client", "-connect", "127.0.0.1:\(server.port)", "-servername", "localhost",
                    "-CAfile", server.rootCertificate, "-verify_return_error",
                ], input: "")
            let certificate = try Tool.run("openssl", ["x509", "-noout", "-serial"], input: handshake.output)
            return certificate.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let first = try servedSerial()
        #expect(first.hasPrefix("serial="))
        var renewed = first
        let deadline = Date().addingTimeInterval(45)
        while renewed == first && Date() < deadline {
            Thread.sleep(forTimeInterval: 1)
            renewed = try servedSerial()
        }
        #expect(renewed != first && renewed.hasPrefix("serial="), "\(server.logText)")
        #expect(server.logText.contains("renewed the server's own TLS certificate"))
    }

    @Test(
        "ca init with an encrypted key, served with the passphrase from the environment; ca import refuses a mismatched key by name"
    )
    func caCommands() throws {
        let directory = try Fixtures.temporaryDirectory("signet-ca-cli")
        try "correct horse\n".write(to: directory + "/passphrase")
        let created = try Tool.run(
            Fixtures.signetBinary,
            [
                "ca", "init", "--dir", directory + "/ca", "--key-type", "ecdsa-p384", "--org", "Example Corp",
                "--passphrase-file", directory + "/passphrase",
            ])
        #expect(created.succeeded, "\(created.error)")
        #expect(
            try String(contentsOfFile: directory + "/ca/intermediate.key", encoding: .utf8).contains(
                "ENCRYPTED PRIVATE KEY"))
        let again = try Tool.run(Fixtures.signetBinary, ["ca", "init", "--dir", directory + "/ca"])
        #expect(!again.succeeded && again.error.contains("already exists; pass --force"))

        let withoutPassphrase = try Tool.run(
            Fixtures.signetBinary, ["serve"],
            environment: [
                "SIGNET_DATA_DIR": directory + "/data", "SIGNET_CA_DIR": directory + "/ca",
                "SIGNET_LISTEN": "127.0.0.1:0",
            ])
        #expect(!withoutPassphrase.succeeded && withoutPassphrase.error.contains("encrypted"))
        let server = try ServerProcess(
            dataDirectory: directory + "/data",
            environment: [
                "SIGNET_CA_DIR": directory + "/ca", "SIGNET_CA_PASSPHRASE": "correct horse",
            ])
        defer { server.stop() }
        #expect(server.logText.contains("Example Corp Intermediate CA"))

        let other = try Tool.run(Fixtures.signetBinary, ["ca", "init", "--dir", directory + "/other"])
        #expect(other.succeeded)
        let refused = try Tool.run(
            Fixtures.signetBinary,
            [
                "ca", "import", "--cert", directory + "/ca/intermediate.crt", "--key",
                directory + "/other/intermediate.key",
                "--root", directory + "/ca/root.crt", "--dir", directory + "/imported",
            ])
        #expect(!refused.succeeded)
        #expect(refused.error.contains("key check failed"))
        #expect(
            !FileManager.default.fileExists(atPath: directory + "/imported/intermediate.key"),
            "nothing is copied when a check fails")
        let imported = try Tool.run(
            Fixtures.signetBinary,
            [
                "ca", "import", "--cert", directory + "/ca/intermediate.crt", "--key",
                directory + "/ca/intermediate.key",
                "--root", directory + "/ca/root.crt", "--dir", directory + "/imported", "--passphrase-file",
                directory + "/passphrase",
            ])
        #expect(imported.succeeded, "\(imported.error)")
    }

    @Test("SIGTERM finishes cleanly and closes the ledger; a restart keeps the CA and the ledger")
    func gracefulShutdown() throws {
        let server = try ServerProcess()
        let token = try server.createToken(name: "ci", allow: ["*.example.com"])
        let first = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "a.example.com", "--out", server.dataDirectory + "/one",
        ])
        #expect(first.succeeded)
        #expect(server.process.terminate(within: 20), "ends within 20 s of SIGTERM")
        #expect(server.process.terminationStatus == 0, "\(server.logText)")
        #expect(server.logText.contains("ledger closed"))

        let again = try ServerProcess(dataDirectory: server.dataDirectory)
        defer { again.stop() }
        #expect(!again.logText.contains("DEVELOPMENT CA"), "the CA is reused, not recreated")
        let listed = try again.signet([
            "certs", "list", "--server", again.url, "--token", token, "--cacert", again.rootCertificate, "--json",
        ])
        #expect(listed.output.contains("a.example.com"))
    }

    @Test("kill -9 during a burst of issuance loses no certificate a client received and leaves no partial row")
    func crashDurability() async throws {
        let server = try ServerProcess()
        let token = try server.createToken(name: "burst", allow: ["*.example.com"])
        let csr = try Fixtures.csr(dnsNames: ["burst.example.com"])
        let body = try JSONSerialization.data(withJSONObject: ["csr": csr])
        try body.write(to: URL(fileURLWithPath: server.dataDirectory + "/body.json"))

        // Eight clients issue in a loop on their own threads; the server is killed while they run.
        let received = LockedSerials()
        DispatchQueue.global().asyncAfter(deadline: .now() + 1.5) { server.kill(signal: SIGKILL) }
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<500 {
                guard
                    let result = try? Tool.run(
                        "curl",
                        [
                            "-s", "--max-time", "5", "--cacert", server.rootCertificate, "-H",
                            "Authorization: Bearer \(token)",
                            "-H", "Content-Type: application/json", "--data-binary",
                            "@" + server.dataDirectory + "/body.json",
                            "-w", "\n%{http_code}", server.url + "/v1/certificates",
                        ])
                else { return }
                let lines = result.output.split(separator: "\n")
                guard lines.last == "201",
                    let object = try? JSONSerialization.jsonObject(
                        with: Data(lines.dropLast().joined(separator: "\n").utf8)) as? [String: Any],
                    let serial = object["serial"] as? String
                else { return }
                received.add(serial)
            }
        }
        server.process.waitUntilExit()
        #expect(server.process.terminationReason == .uncaughtSignal)
        #expect(received.count > 0, "some issuances completed before the kill")

        let queue = try DatabaseQueue(path: server.dataDirectory + "/ledger.sqlite")
        try await queue.read { db in
            #expect(try String.fetchOne(db, sql: "PRAGMA integrity_check") == "ok")
            let stored = Set(
                try String.fetchAll(db, sql: "SELECT serial FROM certificates WHERE requester = 'token:burst'"))
            let lost = received.all.subtracting(stored)
            #expect(lost.isEmpty, "certificates handed out but not in the ledger: \(lost)")
            // Every certificate row has its names and its audit event: no half-written issuance.
            let orphans = try Int.fetchOne(
                db,
                sql: """
                    SELECT count(*) FROM certificates c WHERE c.requester = 'token:burst' AND (
                        NOT EXISTS (SELECT 1 FROM certificate_names n WHERE n.certificate_id = c.id)
                        OR NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.subject = c.serial AND e.outcome = 'success'))
                    """)
            #expect(orphans == 0)
        }
    }
}

extension ServeProcessTests {
    @Test(
        "signet ledger backup under load: the copy is consistent, 0600, and holds every certificate answered before the backup began; an existing file is never overwritten; served from the restored copy, Signet answers for them"
    )
    func backupUnderLoad() async throws {
        let server = try ServerProcess()
        defer { server.stop() }
        let token = try server.createToken(name: "load", allow: ["*.example.com"])
        let csr = try Fixtures.csr(dnsNames: ["load.example.com"])
        try JSONSerialization.data(withJSONObject: ["csr": csr])
            .write(to: URL(fileURLWithPath: server.dataDirectory + "/body.json"))
        let received = LockedSerials()
        let beforeBackup = LockedSerials()
        let backupDone = LockedFlag()
        let copy = server.dataDirectory + "/backup.sqlite"
        // Two clients issue in a loop (as many as this machine runs at once); a second into their burst, the backup
        // is taken from another thread, and they go on until a second after it is done.
        Thread {
            Thread.sleep(forTimeInterval: 1)
            for serial in received.all { beforeBackup.add(serial) }
            let started = Date()
            let result = try? server.signet(["ledger", "backup", "--to", copy])
            #expect(result?.succeeded == true, "\(result?.error ?? "")")
            print(
                "ledger backup: \(String(format: "%.2f", Date().timeIntervalSince(started))) s: \(result?.output ?? "")"
            )
            backupDone.set()
        }.start()
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            // Until the backup is done and a second more, so that the backup runs in the middle of the burst.
            var deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                if backupDone.isSet { deadline = min(deadline, Date().addingTimeInterval(1)) }
                guard
                    let result = try? Tool.run(
                        "curl",
                        [
                            "-s", "--max-time", "5", "--cacert", server.rootCertificate, "-H",
                            "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                            "--data-binary", "@" + server.dataDirectory + "/body.json", "-w", "\n%{http_code}",
                            server.url + "/v1/certificates",
                        ]),
                    result.output.hasSuffix("\n201"),
                    let object = try? JSONSerialization.jsonObject(
                        with: Data(result.output.dropLast(4).utf8)) as? [String: Any],
                    let serial = object["serial"] as? String
                else { continue }
                received.add(serial)
            }
        }
        #expect(beforeBackup.count > 0, "certificates were answered before the backup began")
        let attributes = try FileManager.default.attributesOfItem(atPath: copy)
        #expect(attributes[.posixPermissions] as? Int == 0o600)
        let queue = try DatabaseQueue(path: copy)
        try await queue.read { db in
            #expect(try String.fetchOne(db, sql: "PRAGMA integrity_check") == "ok")
            let stored = Set(try String.fetchAll(db, sql: "SELECT serial FROM certificates"))
            let missing = beforeBackup.all.subtracting(stored)
            #expect(missing.isEmpty, "answered before the backup began but not in it: \(missing)")
            print(
                "ledger backup under load: \(beforeBackup.count) certificates answered before it began, \(stored.count) in the copy, \(received.count) answered in all"
            )
            let orphans = try Int.fetchOne(
                db,
                sql: """
                    SELECT count(*) FROM certificates c WHERE NOT EXISTS (
                        SELECT 1 FROM audit_events e WHERE e.subject = c.serial AND e.outcome = 'success')
                    """)
            #expect(orphans == 0, "every certificate in the copy has its audit event")
        }
        try queue.close()
        let again = try server.signet(["ledger", "backup", "--to", copy])
        #expect(!again.succeeded && again.error.contains("already exists"), "\(again.error)")
        #expect(server.process.isRunning, "the server served throughout")

        // Restored: Signet serving from the copy answers for the certificates of before the backup.
        server.stop()
        let restored = try ServerProcess(dataDirectory: server.dataDirectory, environment: ["SIGNET_DATABASE": copy])
        defer { restored.stop() }
        for serial in beforeBackup.all {
            let found = try Tool.run(
                "curl",
                [
                    "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert",
                    restored.rootCertificate, "-H", "Authorization: Bearer \(token)",
                    restored.url + "/v1/certificates/\(serial)",
                ])
            #expect(found.output == "200", "\(serial) from the restored ledger")
        }
    }
}

final class LockedFlag: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

final class LockedSerials: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var serials = Set<String>()

    func add(_ serial: String) { lock.withLock { _ = serials.insert(serial) } }
    var all: Set<String> { lock.withLock { serials } }
    var count: Int { lock.withLock { serials.count } }
}
