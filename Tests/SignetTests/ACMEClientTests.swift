import Crypto
import Foundation
import GRDB
import SignetACME
import SignetAuthority
import Testing
import X509

/// The ACME clients people run, unchanged but for the directory URL and the trusted root: certbot (Debian's 2.1 and
/// a current one from PyPI, with ARI), lego (Debian's 4.9: http-01, tls-alpn-01, dns-01, EAB, RSA and ECDSA
/// accounts), and cert-manager's wire behaviour replayed. Challenges are validated for real: http-01 and
/// tls-alpn-01 on loopback ports, dns-01 against BIND, which also resolves every name of the zone to 127.0.0.1.
@Suite("ACME: certbot, lego and cert-manager against Signet", .serialized)
struct ACMEClientTests {
    final class Fixture: Sendable {
        let dns: AuthoritativeDNS
        let server: ServerProcess
        let configuration: String
        let httpPort: Int
        let tlsPort: Int
        let work: String

        init() throws {
            dns = try AuthoritativeDNS(zone: "acme.test")
            work = try Fixtures.temporaryDirectory("signet-acme-clients")
            configuration = work + "/signet.yaml"
            httpPort = try freePort()
            tlsPort = try freePort()
            try """
            acme:
              httpPort: \(httpPort)
              tlsPort: \(tlsPort)
              resolver: 127.0.0.1:\(dns.port)
              validationTimeoutSeconds: 5
              directories:
                - name: clients
                  allow: ["**.acme.test", "acme.test", "127.0.0.1"]
                  profiles: [server, server-client]
                - name: teams
                  allow: ["**.acme.test"]
                  externalAccountRequired: true
            """.write(to: configuration)
            server = try ServerProcess(dataDirectory: work + "/data", arguments: ["--config", configuration])
        }

        func directoryURL(_ name: String) -> String { server.url + "/acme/\(name)/directory" }

        /// `requester` of each certificate for `name`, newest first.
        func requesters(of name: String) throws -> [String] {
            var configuration = Configuration()
            configuration.readonly = true
            return try DatabaseQueue(path: server.dataDirectory + "/ledger.sqlite", configuration: configuration).read {
                db in
                try String.fetchAll(
                    db,
                    sql: """
                        SELECT c.requester FROM certificates c JOIN certificate_names n ON n.certificate_id = c.id WHERE n.name = ? ORDER BY c.id DESC
                        """, arguments: [name])
            }
        }

        func status(ofSerial serial: String) throws -> String? {
            var configuration = Configuration()
            configuration.readonly = true
            return try DatabaseQueue(path: server.dataDirectory + "/ledger.sqlite", configuration: configuration).read {
                db in
                try String.fetchOne(
                    db, sql: "SELECT status FROM certificates WHERE serial = ?", arguments: [serial.lowercased()])
            }
        }

        /// Checks a PEM chain (leaf first) with openssl against Signet's root; returns the leaf's serial.
        @discardableResult
        func verifyChain(_ path: String) throws -> String {
            let result = try Tool.run(
                "openssl", ["verify", "-CAfile", server.rootCertificate, "-untrusted", path, path])
            #expect(result.succeeded, "openssl verify \(path): \(result.output) \(result.error)")
            return try Tool.run("openssl", ["x509", "-in", path, "-noout", "-serial"]).output
                .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "")
        }

        func eabKey(label: String, allow: [String]) throws -> (keyID: String, hmac: String) {
            let result = try server.signet(
                ["acme", "eab", "create", "--config", configuration, "--directory", "teams", "--name", label]
                    + allow.flatMap { ["--allow", $0] })
            let lines = result.output.split(separator: "\n")
            guard let keyID = lines.first(where: { $0.hasPrefix("key id:") })?.split(separator: " ").last,
                let hmac = lines.first(where: { $0.hasPrefix("hmac key:") })?.split(separator: " ").last
            else {
                throw ServerProcess.ServerFailed(log: result.error)
            }
            return (String(keyID), String(hmac))
        }
    }

    static let shared = Result { try Fixture() }
    var fixture: Fixture { get throws { try Self.shared.get() } }

    /// A program run with a time limit (clients wait on servers; a hung one must not hang the suite).
    func run(_ program: String, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil)
        throws -> Tool.Result
    {
        try Tool.run(
            "timeout", ["180", try Tool.which(program)] + arguments, environment: environment, directory: directory)
    }

    static let certbotVenv = Fixtures.packageRoot + "/.build/acme-clients/certbot/bin/certbot"

    func certbot(_ binary: String, _ arguments: [String], configDirectory: String) throws -> Tool.Result {
        try Tool.run(
            "timeout",
            ["180", binary] + arguments + [
                "-n", "--config-dir", configDirectory, "--work-dir", configDirectory, "--logs-dir", configDirectory,
            ], environment: ["REQUESTS_CA_BUNDLE": try fixture.server.rootCertificate])
    }

    @Test(
        "certbot from Debian: http-01 standalone, dns-01 through BIND by RFC 2136 with a wildcard, renewal, revocation")
    func debianCertbot() throws {
        let fixture = try fixture
        let config = try Fixtures.temporaryDirectory("certbot")
        let server = ["--server", fixture.directoryURL("clients"), "--agree-tos", "--register-unsafely-without-email"]
        let http = try certbot(
            "/usr/bin/certbot",
            ["certonly"] + server + [
                "--standalone", "--http-01-port", "\(fixture.httpPort)", "--http-01-address", "127.0.0.1", "-d",
                "www.acme.test", "-d", "acme.test",
            ], configDirectory: config)
        #expect(http.succeeded, "\(http.output)\(http.error)")
        let first = try fixture.verifyChain(config + "/live/www.acme.test/fullchain.pem")
        #expect(try fixture.requesters(of: "www.acme.test").first?.hasPrefix("acme:clients/") == true)

        let renewed = try certbot(
            "/usr/bin/certbot", ["renew", "--force-renewal", "--no-random-sleep-on-renew"], configDirectory: config)
        #expect(renewed.succeeded, "\(renewed.output)\(renewed.error)")
        let second = try fixture.verifyChain(config + "/live/www.acme.test/fullchain.pem")
        #expect(first != second)

        let credentials = config + "/rfc2136.ini"
        try """
        dns_rfc2136_server = 127.0.0.1
        dns_rfc2136_port = \(fixture.dns.port)
        dns_rfc2136_name = \(fixture.dns.keyName)
        dns_rfc2136_secret = \(fixture.dns.secret)
        dns_rfc2136_algorithm = HMAC-SHA256
        """.write(to: credentials)
        chmod(credentials, 0o600)
        let dns = try certbot(
            "/usr/bin/certbot",
            ["certonly"] + server + [
                "--dns-rfc2136", "--dns-rfc2136-credentials", credentials, "--dns-rfc2136-propagation-seconds", "1",
                "-d", "apps.acme.test", "-d", "*.apps.acme.test",
            ], configDirectory: config)
        #expect(dns.succeeded, "\(dns.output)\(dns.error)")
        let wildcard = try fixture.verifyChain(config + "/live/apps.acme.test/fullchain.pem")
        let names = try Tool.run(
            "openssl", ["x509", "-in", config + "/live/apps.acme.test/cert.pem", "-noout", "-ext", "subjectAltName"]
        ).output
        #expect(names.contains("DNS:*.apps.acme.test") && names.contains("DNS:apps.acme.test"))

        let revoked = try certbot(
            "/usr/bin/certbot",
            [
                "revoke", "--server", fixture.directoryURL("clients"), "--cert-path",
                config + "/live/apps.acme.test/cert.pem",
                "--reason", "keycompromise", "--no-delete-after-revoke",
            ], configDirectory: config)
        #expect(revoked.succeeded, "\(revoked.output)\(revoked.error)")
        #expect(try fixture.status(ofSerial: wildcard) == "revoked")
    }

    @Test("certbot from PyPI: a profile, and ARI: not due until an administrator advances the window, then renewed")
    func currentCertbot() throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: Self.certbotVenv),
            "a current certbot in \(Self.certbotVenv): scripts/test.sh installs it")
        let fixture = try fixture
        let config = try Fixtures.temporaryDirectory("certbot-current")
        let issued = try certbot(
            Self.certbotVenv,
            [
                "certonly", "--server", fixture.directoryURL("clients"), "--agree-tos",
                "--register-unsafely-without-email",
                "--standalone", "--http-01-port", "\(fixture.httpPort)", "--http-01-address", "127.0.0.1", "-d",
                "ari.acme.test",
                "--required-profile", "server-client",
            ], configDirectory: config)
        #expect(issued.succeeded, "\(issued.output)\(issued.error)")
        let serial = try fixture.verifyChain(config + "/live/ari.acme.test/fullchain.pem")
        let usages = try Tool.run(
            "openssl", ["x509", "-in", config + "/live/ari.acme.test/cert.pem", "-noout", "-ext", "extendedKeyUsage"]
        ).output
        #expect(
            usages.contains("TLS Web Server Authentication") && usages.contains("TLS Web Client Authentication"),
            "the server-client profile")

        let renew = [
            "renew", "--no-random-sleep-on-renew", "--standalone", "--http-01-port", "\(fixture.httpPort)",
            "--http-01-address", "127.0.0.1",
        ]
        let early = try certbot(Self.certbotVenv, renew, configDirectory: config)
        #expect(
            early.succeeded && (early.output + early.error).contains("not yet due"), "\(early.output)\(early.error)")
        let advanced = try fixture.server.signet([
            "acme", "ari", "advance", "--config", fixture.configuration, "--serial", serial,
        ])
        #expect(advanced.succeeded, "\(advanced.error)")
        // certbot keeps renewalInfo's Retry-After (6 h) in the lineage; forget it, as six hours passing would.
        let lineage = config + "/renewal/ari.acme.test.conf"
        let text = try String(contentsOfFile: lineage, encoding: .utf8)
        try String(text.components(separatedBy: "[acme_renewal_info]")[0]).write(to: lineage)
        let due = try certbot(Self.certbotVenv, renew, configDirectory: config)
        #expect(
            due.succeeded && (due.output + due.error).contains("Renewing an existing certificate"),
            "\(due.output)\(due.error)")
        #expect(try fixture.verifyChain(config + "/live/ari.acme.test/fullchain.pem") != serial)
    }

    @Test(
        "lego: http-01 with an ECDSA account, tls-alpn-01 with an RSA account, dns-01 by RFC 2136 with EAB and a wildcard"
    )
    func lego() throws {
        let fixture = try fixture
        let environment = ["LEGO_CA_CERTIFICATES": try fixture.server.rootCertificate]
        func lego(_ path: String, _ directory: String, _ arguments: [String], extra: [String: String] = [:]) throws
            -> Tool.Result
        {
            try run(
                "lego",
                [
                    "--path", path, "--server", fixture.directoryURL(directory), "--accept-tos", "--email",
                    "lego@acme.test",
                ] + arguments + ["run"],
                environment: environment.merging(extra) { $1 })
        }
        let home = try Fixtures.temporaryDirectory("lego")
        let http = try lego(
            home + "/http", "clients",
            ["--domains", "lego-http.acme.test", "--http", "--http.port", "127.0.0.1:\(fixture.httpPort)"])
        #expect(http.succeeded, "\(http.output)\(http.error)")
        try fixture.verifyChain(home + "/http/certificates/lego-http.acme.test.crt")

        let tls = try lego(
            home + "/tls", "clients",
            [
                "--key-type", "rsa2048", "--domains", "lego-tls.acme.test", "--tls", "--tls.port",
                "127.0.0.1:\(fixture.tlsPort)",
            ])
        #expect(tls.succeeded, "\(tls.output)\(tls.error)")
        try fixture.verifyChain(home + "/tls/certificates/lego-tls.acme.test.crt")

        let (keyID, hmac) = try fixture.eabKey(label: "platform", allow: ["**.platform.acme.test"])
        let dns = try lego(
            home + "/dns", "teams",
            [
                "--eab", "--kid", keyID, "--hmac", hmac, "--domains", "*.gw.platform.acme.test", "--domains",
                "gw.platform.acme.test",
                "--dns", "rfc2136", "--dns.disable-cp",
            ],
            extra: [
                "RFC2136_NAMESERVER": "127.0.0.1:\(fixture.dns.port)", "RFC2136_TSIG_KEY": fixture.dns.keyName,
                "RFC2136_TSIG_SECRET": fixture.dns.secret,
                "RFC2136_TSIG_ALGORITHM": "hmac-sha256.", "RFC2136_TTL": "5", "RFC2136_PROPAGATION_TIMEOUT": "20",
                "RFC2136_POLLING_INTERVAL": "1",
                "RFC2136_SEQUENCE_INTERVAL": "1",
            ])
        #expect(dns.succeeded, "\(dns.output)\(dns.error)")
        try fixture.verifyChain(home + "/dns/certificates/_.gw.platform.acme.test.crt")
        let requester = try #require(try fixture.requesters(of: "gw.platform.acme.test").first)
        #expect(requester.hasPrefix("acme:teams/platform/"), "bound to the EAB key's label: \(requester)")
        let outside = try lego(
            home + "/outside", "teams",
            [
                "--eab", "--kid", keyID, "--hmac", hmac, "--domains", "other.acme.test", "--http", "--http.port",
                "127.0.0.1:\(fixture.httpPort)",
            ])
        #expect(
            !outside.succeeded && (outside.output + outside.error).contains("rejectedIdentifier"),
            "the EAB key's names bind its accounts")
    }

    @Test(
        "cert-manager's ACME issuer, replayed request by request: RSA account with EAB, HEAD nonces, exactly 201, authorization polling, finalize Location"
    )
    func certManagerReplay() throws {
        let fixture = try fixture
        let (keyID, hmac) = try fixture.eabKey(label: "cluster-a", allow: [])
        let result = try run(
            "python3",
            [
                Fixtures.packageRoot + "/Tests/ACME/certmanager_replay.py", fixture.directoryURL("teams"),
                try fixture.server.rootCertificate,
                "\(fixture.httpPort)", keyID, hmac, "ingress.acme.test", "www.ingress.acme.test",
            ])
        #expect(result.succeeded, "\(result.error)")
        let summary = try #require(
            (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: String])
        let chain = try Fixtures.temporaryDirectory("cert-manager") + "/tls.crt"
        try (summary["chain"] ?? "").write(to: chain)
        try fixture.verifyChain(chain)
        let accountID = try #require(summary["account"]?.split(separator: "/").last.map(String.init))
        #expect(try fixture.requesters(of: "ingress.acme.test").first == "acme:teams/cluster-a/\(accountID)")
    }

    @Test(
        "an IP address identifier (RFC 8738), validated by http-01 on the address itself, as cert-manager orders spec.ipAddresses"
    )
    func ipIdentifier() throws {
        let fixture = try fixture
        let result = try run(
            "python3",
            [
                Fixtures.packageRoot + "/Tests/ACME/certmanager_replay.py", fixture.directoryURL("clients"),
                try fixture.server.rootCertificate,
                "\(fixture.httpPort)", "-", "-", "127.0.0.1",
            ])
        #expect(result.succeeded, "\(result.error)")
        let summary = try #require(
            (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: String])
        let chain = try Fixtures.temporaryDirectory("acme-ip") + "/tls.crt"
        try (summary["chain"] ?? "").write(to: chain)
        try fixture.verifyChain(chain)
        let names = try Tool.run("openssl", ["x509", "-in", chain, "-noout", "-ext", "subjectAltName"]).output
        #expect(names.contains("IP Address:127.0.0.1"), "\(names)")
    }

    @Test(
        "dns-01 follows a CNAME to where the record was delegated; a challenge nobody answers makes the authorization invalid"
    )
    func validatorDetails() async throws {
        let fixture = try fixture
        let client = try await ACMETestClient(
            server: fixture.server, directory: "clients", key: .p384(P384.Signing.PrivateKey()))
        try await client.register()
        let order = try await client.order(["alias.acme.test"])
        let authorizationURL = try #require((order.json["authorizations"] as? [String])?.first)
        let authorization = try await client.post(authorizationURL, nil)
        let challenge = try #require(
            (authorization.json["challenges"] as? [[String: Any]])?.first { $0["type"] as? String == "dns-01" })
        let keyAuthorization = ChallengeType.keyAuthorization(
            token: challenge["token"] as? String ?? "", accountThumbprint: client.signer.publicJWK.thumbprint)
        try fixture.dns.addTXT("delegated.acme.test", ChallengeType.dnsDigest(of: keyAuthorization))
        _ = try await client.post(challenge["url"] as? String ?? "", [:])
        let settled = try await client.poll(authorizationURL) { $0["status"] as? String != "pending" }
        #expect(settled["status"] as? String == "valid", "\(settled)")

        let unanswered = try await client.order(["nobody.acme.test"])
        let unansweredURL = try #require((unanswered.json["authorizations"] as? [String])?.first)
        let pending = try await client.post(unansweredURL, nil)
        let http = try #require(
            (pending.json["challenges"] as? [[String: Any]])?.first { $0["type"] as? String == "http-01" })
        _ = try await client.post(http["url"] as? String ?? "", [:])
        let failed = try await client.poll(unansweredURL) { $0["status"] as? String != "pending" }
        #expect(failed["status"] as? String == "invalid")
        let error =
            (failed["challenges"] as? [[String: Any]])?.first { $0["type"] as? String == "http-01" }?["error"]
            as? [String: Any]
        #expect(
            (error?["type"] as? String)?.hasPrefix("urn:ietf:params:acme:error:") == true,
            "\(String(describing: error))")
        let order2 = try await client.post(unanswered.location ?? "", nil)
        #expect(order2.json["status"] as? String == "invalid")
    }
}
