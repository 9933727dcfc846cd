import Foundation
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetServer
import Testing

@Suite("configuration")
struct ConfigurationTests {
    @Test("YAML settings, then environment overrides")
    func layering() throws {
        let path = try Fixtures.temporaryDirectory() + "/signet.yaml"
        try """
        listen: 0.0.0.0:9443
        dataDirectory: /var/lib/signet
        durability: normal
        ca:
          directory: /etc/signet/ca
        tls:
          clientAuth: optional
          hostnames: [signet.example.com]
        issuance:
          defaultDuration: 720h
          maxDuration: P60D
        clientCertificates:
          - subject: 'CN=ops-robot, O=Example Ops'
            issuer: CN=Corp Client CA,O=Example
            allow: ['*.ops.example.com']
          - uri: spiffe://example.org/ns/ops/sa/robot
            issuer: CN=Corp Client CA,O=Example
            allow: ['*.robots.example.com']
            profiles: [server, client]
        """.write(to: path)
        let configuration = try ServerConfiguration.load(
            path: path, environment: ["SIGNET_LISTEN": "127.0.0.1:7443", "SIGNET_TLS": "http"])
        #expect(configuration.host == "127.0.0.1" && configuration.port == 7443)
        #expect(configuration.transport == .http)
        #expect(configuration.resolvedDatabasePath == "/var/lib/signet/ledger.sqlite")
        #expect(configuration.durability == .normal)
        #expect(configuration.resolvedCADirectory == "/etc/signet/ca" && !configuration.mayCreateDevelopmentCA)
        #expect(configuration.clientAuthentication == .optional)
        #expect(
            configuration.defaultLifetime == .seconds(720 * 3600)
                && configuration.maximumLifetime == .seconds(60 * 86_400))
        #expect(
            configuration.clientCertificatePolicies.map(\.match) == [
                .subject("CN=ops-robot,O=Example Ops"), .uri("spiffe://example.org/ns/ops/sa/robot"),
            ])
        #expect(configuration.clientCertificatePolicies.first?.issuer == "CN=Corp Client CA,O=Example")
        #expect(
            configuration.clientCertificatePolicies.first?.policy.allowedProfiles == [.server],
            "server alone unless asked")
        #expect(configuration.clientCertificatePolicies.last?.policy.allowedProfiles == [.server, .client])
    }

    @Test("the CA key on a PKCS#11 token: YAML, environment overrides, admission limits")
    func pkcs11Settings() throws {
        let path = try Fixtures.temporaryDirectory() + "/signet.yaml"
        try """
        ca:
          directory: /etc/signet/ca
          pkcs11:
            module: /usr/lib/softhsm/libsofthsm2.so
            tokenLabel: ca-token
            keyLabel: intermediate
            pinFile: /run/secrets/pin
            maxConcurrentSigns: 8
        """.write(to: path)
        let configuration = try ServerConfiguration.load(
            path: path, environment: ["SIGNET_PKCS11_KEY_ID": "a1b2", "SIGNET_PKCS11_MAX_SIGNS_PER_SECOND": "500"])
        let token = try #require(configuration.pkcs11)
        #expect(token.module == "/usr/lib/softhsm/libsofthsm2.so" && token.tokenLabel == "ca-token")
        #expect(token.keyID == "a1b2" && token.keyLabel == nil, "the environment's key id replaces the file's label")
        #expect(token.pinFile == "/run/secrets/pin")
        #expect(configuration.signerBackend == "pkcs11")
        #expect(
            configuration.signerLimits
                == .init(ratePerSecond: 500, burst: 50, maximumConcurrent: 8, maximumQueued: 1_024))

        let fromEnvironment = try ServerConfiguration.load(
            path: nil,
            environment: [
                "SIGNET_PKCS11_MODULE": "/lib/hsm.so", "SIGNET_PKCS11_TOKEN": "t", "SIGNET_PKCS11_KEY_LABEL": "k",
                "SIGNET_PKCS11_PIN_ENV": "HSM_PIN",
            ])
        #expect(fromEnvironment.pkcs11?.pinEnvironmentVariable == "HSM_PIN" && !fromEnvironment.mayCreateDevelopmentCA)
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.load(
                path: nil,
                environment: [
                    "SIGNET_KEYVAULT_URL": "https://v", "SIGNET_KEYVAULT_KEY": "k",
                    "SIGNET_KEYVAULT_MAX_QUEUED_SIGNS": "many",
                ])
        }
    }

    @Test(
        "a misspelt key, a bad value or a default beyond the maximum is an error that names it",
        arguments: [
            ("listen: 127.0.0.1:8443\ndurabilty: full\n", "unknown setting 'durabilty'"),
            ("tls:\n  clientAuht: optional\n", "unknown setting 'tls.clientAuht'"),
            ("listen: nowhere\n", "listen 'nowhere' is not host:port"),
            ("durability: sometimes\n", "durability: 'sometimes' is not a valid value"),
            ("issuance:\n  defaultDuration: 100d\n  maxDuration: 90d\n", "exceeds the maximum"),
            ("issuance:\n  maxDuration: forever\n", "issuance.maxDuration"),
            (
                "ca:\n  pkcs11:\n    module: /m.so\n    tokenLabel: t\n    pinFile: /p\n",
                "exactly one of keyLabel and keyId"
            ),
            (
                "ca:\n  pkcs11:\n    module: /m.so\n    tokenLabel: t\n    keyId: 0x1\n    pinFile: /p\n",
                "key id '0x1' is not hex"
            ),
            ("ca:\n  pkcs11:\n    module: /m.so\n    tokenLabel: t\n    keyLabel: k\n", "needs a PIN"),
            (
                "ca:\n  pkcs11:\n    module: /m.so\n    tokenLabel: t\n    keyLabel: k\n    pin: '1234'\n",
                "unknown setting 'ca.pkcs11.pin'"
            ),
            (
                "ca:\n  keyVault:\n    url: https://v\n    keyName: k\n  pkcs11:\n    module: /m.so\n    tokenLabel: t\n    keyLabel: k\n    pinFile: /p\n",
                "not both"
            ),
            (
                "clientCertificates:\n  - commonName: ops-robot\n    allow: [a.example.com]\n",
                "a common name alone is not an identity"
            ),
            (
                "clientCertificates:\n  - subject: CN=ops-robot\n    allow: [a.example.com]\n",
                "clientCertificates[0].issuer"
            ),
            (
                "clientCertificates:\n  - subject: CN=a\n    uri: spiffe://x\n    issuer: CN=ca\n    allow: [a.example.com]\n",
                "exactly one of subject"
            ),
            (
                "clusters:\n  - name: c\n    kubeconfig: /k\nserviceAccounts:\n  cluster: c\n  audience: signet\n  namespaces:\n    - namespace: team-a\n      allow: ['spiffe://cluster.local/ns/team-b/sa/*']\n",
                "is not a SPIFFE ID of namespace team-a"
            ),
            (
                "clusters:\n  - name: c\n    kubeconfig: /k\nserviceAccounts:\n  cluster: c\n  audience: signet\n  namespaces:\n    - namespace: team-a\n      allow: ['spiffe://cluster.local/*']\n",
                "is not a SPIFFE ID of namespace team-a"
            ),
            (
                "issuance:\n  maxDuration: 1h\nocsp:\n  validity: 1d\n  responderLifetime: 1d\n",
                "must be at least twice ocsp.validity"
            ),
            ("ocsp:\n  baseURL: ftp://pki.example.com\n", "ocsp.baseURL must be an http(s) URL"),
        ])
    func errors(_ yaml: String, _ message: String) throws {
        let path = try Fixtures.temporaryDirectory() + "/signet.yaml"
        try yaml.write(to: path)
        #expect {
            try ServerConfiguration.load(path: path, environment: [:])
        } throws: { error in
            String(describing: error).contains(message)
        }
    }

    @Test(
        "one table of settings: the README's reference is that table, and every environment variable the configuration reads is in it"
    )
    func settingsTable() throws {
        let readme = try String(contentsOfFile: Fixtures.packageRoot + "/README.md", encoding: .utf8)
        let begin = "<!-- settings: generated from ConfigurationReference.settings -->\n",
            end = "\n<!-- settings: end -->"
        let start = try #require(readme.range(of: begin), "the README has the generated settings block")
        let stop = try #require(readme.range(of: end, range: start.upperBound..<readme.endIndex))
        let documented = String(readme[start.upperBound..<stop.lowerBound])
        if documented != ConfigurationReference.markdown {
            try ConfigurationReference.markdown.write(
                toFile: NSTemporaryDirectory() + "settings-reference.md", atomically: true, encoding: .utf8)
        }
        #expect(
            documented == ConfigurationReference.markdown,
            "the README's settings block is stale; the table is in \(NSTemporaryDirectory())settings-reference.md")
        // The table is the only place a setting is read from the environment.
        let directory = Fixtures.packageRoot + "/Sources/SignetServer"
        for file in try FileManager.default.contentsOfDirectory(atPath: directory)
        where file.hasSuffix(".swift") && file != "ConfigurationReference.swift" {
            let source = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
            #expect(
                source.matches(of: /environment\["SIGNET_/).isEmpty,
                "\(file) reads a SIGNET_ variable; settings are read through ConfigurationReference.settings")
        }
    }

    @Test(
        "one table of settings: each documented default, applied, is the default; each environment variable sets its setting over the file's value"
    )
    func tableDefaultsAndEnvironment() throws {
        let defaults = ServerConfiguration()
        var checked = 0
        for setting in ConfigurationReference.settings
        where !setting.defaultValue.isEmpty && !setting.defaultValue.contains("<") {
            // Defaults that describe rather than state (`<dataDirectory>/ca`, `unlimited`, `the system roots`) do not
            // parse, or need another setting first; those that parse must be exactly the default.
            guard
                let applied = try? ServerConfiguration.load(
                    path: nil, environment: setting.environment.map { [$0: setting.defaultValue] } ?? [:]),
                setting.environment != nil
            else { continue }
            #expect(
                applied == defaults,
                "\(setting.key): the documented default '\(setting.defaultValue)' is not the default")
            checked += 1
        }
        #expect(checked >= 12, "only \(checked) documented defaults were checked")

        let path = try Fixtures.temporaryDirectory() + "/signet.yaml"
        try "durability: normal\nissuance:\n  maxDuration: 30d\n  defaultDuration: 7d\n".write(to: path)
        let overlaid = try ServerConfiguration.load(
            path: path, environment: ["SIGNET_DURABILITY": "full", "SIGNET_DEFAULT_DURATION": "1d"])
        #expect(overlaid.durability == .full, "the environment wins")
        #expect(overlaid.defaultLifetime == .seconds(86_400))
        #expect(
            overlaid.maximumLifetime == .seconds(30 * 86_400), "the file's value stays where the environment is silent")
        #expect {
            try ServerConfiguration.load(path: nil, environment: ["SIGNET_MAX_DURATION": "soon"])
        } throws: { error in
            String(describing: error).contains("SIGNET_MAX_DURATION")
        }
        #expect {
            try ServerConfiguration.load(path: nil, environment: ["SIGNET_KEYVAULT_KEY": "k"])
        } throws: { error in
            String(describing: error).contains("SIGNET_KEYVAULT_KEY needs the vault")
        }
    }

    @Test(
        "SIGNET_MAX_DURATION and SIGNET_DEFAULT_DURATION reach the service-account and client-certificate policies that set no maxDuration of their own"
    )
    func environmentLifetimesReachPolicies() throws {
        let path = try Fixtures.temporaryDirectory() + "/signet.yaml"
        try """
        clusters:
          - name: c
            kubeconfig: /k
        serviceAccounts:
          cluster: c
          audience: signet
          namespaces:
            - namespace: team-a
              allow: ['*.team-a.example.com']
            - namespace: team-b
              allow: ['*.team-b.example.com']
              maxDuration: 24h
        clientCertificates:
          - subject: CN=robot
            issuer: CN=Corp CA
            allow: [a.example.com]

        """.write(to: path)
        let configuration = try ServerConfiguration.load(
            path: path, environment: ["SIGNET_MAX_DURATION": "720h", "SIGNET_DEFAULT_DURATION": "48h"])
        let teamA = try #require(configuration.serviceAccounts?.namespaces["team-a"])
        #expect(teamA.maximumLifetime == .seconds(720 * 3600) && teamA.defaultLifetime == .seconds(48 * 3600))
        #expect(
            configuration.serviceAccounts?.namespaces["team-b"]?.maximumLifetime == .seconds(24 * 3600),
            "its own maxDuration stays")
        let robot = try #require(configuration.clientCertificatePolicies.first?.policy)
        #expect(robot.maximumLifetime == .seconds(720 * 3600) && robot.defaultLifetime == .seconds(48 * 3600))
    }

    @Test("a configured CA directory that does not exist stops the server instead of creating a development CA")
    func missingConfiguredCA() throws {
        let directory = try Fixtures.temporaryDirectory()
        let result = try Tool.run(
            Fixtures.signetBinary, ["serve"],
            environment: [
                "SIGNET_DATA_DIR": directory, "SIGNET_CA_DIR": directory + "/no-such-ca",
                "SIGNET_LISTEN": "127.0.0.1:0",
            ])
        #expect(!result.succeeded)
        #expect(result.error.contains("no CA in \(directory)/no-such-ca"))
    }

    /// A client CA of the operator's own, made with openssl, and client certificates it (or another CA) signs.
    struct ClientPKI {
        let directory: String

        init(_ directory: String) throws {
            self.directory = directory
            try run([
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-subj", "/O=Example/CN=Corp Client CA", "-keyout", directory + "/corp-ca.key", "-out",
                directory + "/corp-ca.crt",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
            // A CA that calls itself the same name, with another key: the name alone must not be enough.
            try run([
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-subj", "/O=Example/CN=Corp Client CA", "-keyout", directory + "/impostor-ca.key", "-out",
                directory + "/impostor-ca.crt",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        }

        func run(_ arguments: [String]) throws {
            let result = try Tool.run("openssl", arguments)
            guard result.succeeded else {
                throw Tool.ToolMissing(name: "openssl \(arguments.first ?? "") (\(result.error))")
            }
        }

        /// A client certificate: `name.crt` and `name.key`.
        @discardableResult
        func client(_ name: String, subject: String, uri: String? = nil, ca: String = "corp-ca") throws -> (
            certificate: String, key: String
        ) {
            let base = directory + "/" + name
            try run([
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subject,
                "-keyout", base + ".key", "-out", base + ".csr",
            ])
            var extensions = "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"
            if let uri { extensions += "subjectAltName=URI:\(uri)\n" }
            try extensions.write(to: base + ".ext")
            try run([
                "x509", "-req", "-in", base + ".csr", "-CA", directory + "/\(ca).crt", "-CAkey",
                directory + "/\(ca).key",
                "-CAcreateserial", "-days", "1", "-extfile", base + ".ext", "-out", base + ".crt",
            ])
            return (base + ".crt", base + ".key")
        }
    }

    /// POSTs an issuance for `name`, presenting `identity` (certificate and key files) if given.
    static func post(_ server: ServerProcess, _ name: String, identity: (certificate: String, key: String)?) throws -> (
        status: String, body: String
    ) {
        let presented = identity.map { ["--cert", $0.certificate, "--key", $0.key] } ?? []
        let body = try JSONSerialization.data(withJSONObject: ["csr": try Fixtures.csr(dnsNames: [name])])
        let result = try Tool.run(
            "curl",
            ["-s", "--max-time", "5", "--cacert", server.rootCertificate] + presented + [
                "-H", "Content-Type: application/json", "--data-binary", "@-", "-w", "\n%{http_code}",
                server.url + "/v1/certificates",
            ], input: String(decoding: body, as: UTF8.self))
        let lines = result.output.split(separator: "\n")
        return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
    }

    @Test(
        "mutual TLS: identities are a full subject DN or a URI SAN from the configured client CA; a common name, another CA or Signet's own certificates are not"
    )
    func clientCertificateAuthentication() throws {
        let directory = try Fixtures.temporaryDirectory("signet-mtls")
        let pki = try ClientPKI(directory)
        try """
        tls:
          clientAuth: optional
          clientCA: \(directory)/corp-ca.crt
        clientCertificates:
          - subject: CN=ops-robot,O=Example Ops
            issuer: CN=Corp Client CA,O=Example
            allow: ['*.ops.example.com']
          - uri: spiffe://example.org/ns/ops/sa/robot
            issuer: CN=Corp Client CA,O=Example
            allow: ['*.robots.example.com']
        """.write(to: directory + "/signet.yaml")
        let server = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", directory + "/signet.yaml"])
        defer { server.stop() }
        let robot = try pki.client("robot", subject: "/O=Example Ops/CN=ops-robot")
        let spiffe = try pki.client(
            "spiffe", subject: "/O=Example/CN=anything", uri: "spiffe://example.org/ns/ops/sa/robot")
        let bareName = try pki.client("bare", subject: "/CN=ops-robot")
        let impostor = try pki.client("impostor", subject: "/O=Example Ops/CN=ops-robot", ca: "impostor-ca")

        let allowed = try Self.post(server, "a.ops.example.com", identity: robot)
        #expect(allowed.status == "201", "\(allowed.body)")
        #expect(try Self.post(server, "a.example.com", identity: robot).status == "403")
        #expect(try Self.post(server, "b.robots.example.com", identity: spiffe).status == "201")
        #expect(
            try Self.post(server, "b.ops.example.com", identity: spiffe).status == "403",
            "each identity has its own policy")
        #expect(try Self.post(server, "a.ops.example.com", identity: nil).status == "401")
        #expect(
            try Self.post(server, "a.ops.example.com", identity: bareName).status == "401",
            "the same common name with another subject is nobody")
        // Signed by another CA with the same name: the handshake fails (curl reports no HTTP status) or the caller is nobody.
        #expect(try Self.post(server, "a.ops.example.com", identity: impostor).status != "201")

        // What a tenant can get from Signet itself is no identity: a token allowed 'ops-robot' gets a client
        // certificate with CN=ops-robot, which the server does not trust for authentication.
        let token = try server.createToken(name: "tenant", allow: ["ops-robot"], extra: ["--profiles", "client"])
        let issued = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "ops-robot", "--profile", "client", "--out", directory + "/minted",
        ])
        #expect(issued.succeeded, "\(issued.error)")
        #expect(
            try Self.post(
                server, "a.ops.example.com", identity: (directory + "/minted/tls.crt", directory + "/minted/tls.key")
            ).status != "201")

        let auditor = try server.createToken(name: "auditor", allow: [], extra: ["--auditor"])
        let listed = try server.signet([
            "certs", "list", "--server", server.url, "--token", auditor, "--cacert", server.rootCertificate,
            "--requester", "certificate:CN=ops-robot,O=Example Ops",
        ])
        #expect(listed.output.contains("a.ops.example.com"), "\(listed.output)\(listed.error)")
    }

    @Test(
        "client-certificate authentication refuses to start without a client CA of its own, unless self-issued clients are allowed; then identities are never issued"
    )
    func clientCAMustBeSeparate() throws {
        let directory = try Fixtures.temporaryDirectory("signet-mtls-ca")
        func start(_ yaml: String) throws -> Tool.Result {
            try yaml.write(to: directory + "/signet.yaml")
            return try Tool.run(
                "timeout", ["20", Fixtures.signetBinary, "serve", "--config", directory + "/signet.yaml"],
                environment: [
                    "SIGNET_DATA_DIR": directory + "/data", "SIGNET_LISTEN": "127.0.0.1:\(try freePort())",
                ])
        }
        let noCA = try start("tls:\n  clientAuth: require\n")
        #expect(!noCA.succeeded && noCA.error.contains("tls.clientCA is not set"), "\(noCA.error)")
        let ownCA = try start("tls:\n  clientAuth: optional\n  clientCA: \(directory)/data/ca/root.crt\n")
        #expect(!ownCA.succeeded && ownCA.error.contains("holds Signet's own issuing CA"), "\(ownCA.error)")
        // Two CAs in the bundle that call themselves the same: the name cannot tell which one an identity trusts.
        _ = try ClientPKI(directory)  // writes corp-ca.crt and impostor-ca.crt
        let bundle =
            try String(contentsOfFile: directory + "/corp-ca.crt", encoding: .utf8)
            + String(contentsOfFile: directory + "/impostor-ca.crt", encoding: .utf8)
        try bundle.write(to: directory + "/both.crt")
        let ambiguous = try start(
            """
            tls:
              clientAuth: optional
              clientCA: \(directory)/both.crt
            clientCertificates:
              - subject: CN=ops-robot
                issuer: CN=Corp Client CA,O=Example
                allow: ['*.ops.example.com']

            """)
        #expect(
            !ambiguous.succeeded && ambiguous.error.contains("names 2 CAs with different keys"), "\(ambiguous.error)")

        try """
        tls:
          clientAuth: optional
          allowSelfIssuedClients: true
        clientCertificates:
          - subject: CN=ops-robot
            issuer: CN=Signet Development Intermediate CA,O=Signet Development
            allow: ['*.ops.example.com']
        """.write(to: directory + "/signet.yaml")
        let server = try ServerProcess(
            dataDirectory: directory + "/data", arguments: ["--config", directory + "/signet.yaml"])
        defer { server.stop() }
        #expect(server.logText.contains("allowSelfIssuedClients"))
        let token = try server.createToken(
            name: "tenant", allow: ["ops-robot", "*.example.com"], extra: ["--profiles", "server,client"])
        let minted = try server.signet([
            "issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "ops-robot", "--profile", "client", "--out", directory + "/minted",
        ])
        #expect(
            !minted.succeeded && minted.error.contains("client-certificate identity"), "\(minted.output)\(minted.error)"
        )
        #expect(try Self.post(server, "a.example.com", identity: nil).status == "401")
    }

    @Test("tokens get the server profile unless asked for client profiles")
    func tokenProfiles() throws {
        let directory = try Fixtures.temporaryDirectory("signet-profiles")
        let server = try ServerProcess(dataDirectory: directory)
        defer { server.stop() }
        let plain = try server.createToken(name: "plain", allow: ["*.example.com"])
        let refused = try server.signet([
            "issue", "--server", server.url, "--token", plain, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "a.example.com", "--profile", "client", "--out", directory + "/a",
        ])
        #expect(!refused.succeeded && refused.error.contains("profile 'client' is not allowed"), "\(refused.error)")
        let clients = try server.createToken(
            name: "clients", allow: ["*.example.com"], extra: ["--profiles", "server,client"])
        let granted = try server.signet([
            "issue", "--server", server.url, "--token", clients, "--cacert", server.rootCertificate,
            "--generate-key", "ecdsa-p256", "--dns", "a.example.com", "--profile", "client", "--out", directory + "/b",
        ])
        #expect(granted.succeeded, "\(granted.error)")
    }
}
