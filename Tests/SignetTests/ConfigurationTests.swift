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
              - commonName: ops-robot
                allow: ['*.ops.example.com']
                profiles: [server]
            """.write(to: path)
        let configuration = try ServerConfiguration.load(path: path, environment: ["SIGNET_LISTEN": "127.0.0.1:7443", "SIGNET_TLS": "http"])
        #expect(configuration.host == "127.0.0.1" && configuration.port == 7443)
        #expect(configuration.transport == .http)
        #expect(configuration.resolvedDatabasePath == "/var/lib/signet/ledger.sqlite")
        #expect(configuration.durability == .normal)
        #expect(configuration.resolvedCADirectory == "/etc/signet/ca" && !configuration.mayCreateDevelopmentCA)
        #expect(configuration.clientAuthentication == .optional)
        #expect(configuration.defaultLifetime == .seconds(720 * 3600) && configuration.maximumLifetime == .seconds(60 * 86_400))
        #expect(configuration.clientCertificatePolicies.first?.commonName == "ops-robot")
        #expect(configuration.clientCertificatePolicies.first?.policy.allowedProfiles == [.server])
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
        let configuration = try ServerConfiguration.load(path: path, environment: ["SIGNET_PKCS11_KEY_ID": "a1b2", "SIGNET_PKCS11_MAX_SIGNS_PER_SECOND": "500"])
        let token = try #require(configuration.pkcs11)
        #expect(token.module == "/usr/lib/softhsm/libsofthsm2.so" && token.tokenLabel == "ca-token")
        #expect(token.keyID == "a1b2" && token.keyLabel == nil, "the environment's key id replaces the file's label")
        #expect(token.pinFile == "/run/secrets/pin")
        #expect(configuration.signerBackend == "pkcs11")
        #expect(configuration.signerLimits == .init(ratePerSecond: 500, burst: 50, maximumConcurrent: 8, maximumQueued: 1_024))

        let fromEnvironment = try ServerConfiguration.load(path: nil, environment: [
            "SIGNET_PKCS11_MODULE": "/lib/hsm.so", "SIGNET_PKCS11_TOKEN": "t", "SIGNET_PKCS11_KEY_LABEL": "k", "SIGNET_PKCS11_PIN_ENV": "HSM_PIN",
        ])
        #expect(fromEnvironment.pkcs11?.pinEnvironmentVariable == "HSM_PIN" && !fromEnvironment.mayCreateDevelopmentCA)
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.load(path: nil, environment: ["SIGNET_KEYVAULT_URL": "https://v", "SIGNET_KEYVAULT_KEY": "k", "SIGNET_KEYVAULT_MAX_QUEUED_SIGNS": "many"])
        }
    }

    @Test("a misspelt key, a bad value or a default beyond the maximum is an error that names it", arguments: [
        ("listen: 127.0.0.1:8443\ndurabilty: full\n", "unknown setting 'durabilty'"),
        ("tls:\n  clientAuht: optional\n", "unknown setting 'tls.clientAuht'"),
        ("listen: nowhere\n", "listen 'nowhere' is not host:port"),
        ("durability: sometimes\n", "durability: 'sometimes' is not a valid value"),
        ("issuance:\n  defaultDuration: 100d\n  maxDuration: 90d\n", "exceeds the maximum"),
        ("issuance:\n  maxDuration: forever\n", "issuance.maxDuration"),
        ("ca:\n  pkcs11:\n    module: /m.so\n    tokenLabel: t\n    pinFile: /p\n", "exactly one of keyLabel and keyId"),
        ("ca:\n  pkcs11:\n    module: /m.so\n    tokenLabel: t\n    keyId: 0x1\n    pinFile: /p\n", "key id '0x1' is not hex"),
        ("ca:\n  pkcs11:\n    module: /m.so\n    tokenLabel: t\n    keyLabel: k\n", "needs a PIN"),
        ("ca:\n  pkcs11:\n    module: /m.so\n    tokenLabel: t\n    keyLabel: k\n    pin: '1234'\n", "unknown setting 'ca.pkcs11.pin'"),
        ("ca:\n  keyVault:\n    url: https://v\n    keyName: k\n  pkcs11:\n    module: /m.so\n    tokenLabel: t\n    keyLabel: k\n    pinFile: /p\n", "not both"),
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

    @Test("a configured CA directory that does not exist stops the server instead of creating a development CA")
    func missingConfiguredCA() throws {
        let directory = try Fixtures.temporaryDirectory()
        let result = try Tool.run(Fixtures.signetBinary, ["serve"], environment: [
            "SIGNET_DATA_DIR": directory, "SIGNET_CA_DIR": directory + "/no-such-ca", "SIGNET_LISTEN": "127.0.0.1:0",
        ])
        #expect(!result.succeeded)
        #expect(result.error.contains("no CA in \(directory)/no-such-ca"))
    }

    @Test("mutual TLS: a client certificate from the CA authenticates as its configured policy")
    func clientCertificateAuthentication() throws {
        let directory = try Fixtures.temporaryDirectory("signet-mtls")
        try """
            tls:
              clientAuth: optional
            clientCertificates:
              - commonName: ops-robot
                allow: ['*.ops.example.com']
            """.write(to: directory + "/signet.yaml")
        let server = try ServerProcess(dataDirectory: directory, arguments: ["--config", directory + "/signet.yaml"])
        defer { server.stop() }
        let token = try server.createToken(name: "bootstrap", allow: ["ops-robot"])
        let issued = try server.signet(["issue", "--server", server.url, "--token", token, "--cacert", server.rootCertificate,
                                        "--generate-key", "ecdsa-p256", "--dns", "ops-robot", "--profile", "client", "--out", directory + "/robot"])
        #expect(issued.succeeded, "\(issued.error)")

        func post(_ name: String, withCertificate: Bool) throws -> (status: String, body: String) {
            let identity = withCertificate ? ["--cert", directory + "/robot/tls.crt", "--key", directory + "/robot/tls.key"] : []
            let body = try JSONSerialization.data(withJSONObject: ["csr": try Fixtures.csr(dnsNames: [name])])
            let result = try Tool.run("curl", ["-s", "--max-time", "5", "--cacert", server.rootCertificate] + identity + [
                "-H", "Content-Type: application/json", "--data-binary", "@-", "-w", "\n%{http_code}", server.url + "/v1/certificates",
            ], input: String(decoding: body, as: UTF8.self))
            let lines = result.output.split(separator: "\n")
            return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
        }
        let allowed = try post("a.ops.example.com", withCertificate: true)
        #expect(allowed.status == "201", "\(allowed.body)")
        let outside = try post("a.example.com", withCertificate: true)
        #expect(outside.status == "403", "\(outside.body)")
        let anonymous = try post("a.ops.example.com", withCertificate: false)
        #expect(anonymous.status == "401", "\(anonymous.body)")

        let listed = try server.signet(["certs", "list", "--server", server.url, "--token", token, "--cacert", server.rootCertificate, "--requester", "certificate:ops-robot"])
        #expect(listed.output.contains("a.ops.example.com"), "\(listed.output)\(listed.error)")
    }
}
