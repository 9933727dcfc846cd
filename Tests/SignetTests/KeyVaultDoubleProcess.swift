import Foundation

/// The Key Vault and Entra ID test double (Tests/KeyVaultDouble/keyvault_double.py) as a process on a free port.
final class KeyVaultDoubleProcess: @unchecked Sendable {
    // @unchecked: the Process is only touched from the test that owns this value.
    static let tenant = "00000000-0000-0000-0000-000000000001"
    static let clientSecret = "test-secret"

    let directory: String
    let port: Int
    let process: Process

    var url: String { "https://127.0.0.1:\(port)" }
    /// The CA that signed the double's HTTPS certificate.
    var caFile: String { directory + "/ca.crt" }

    init() throws {
        directory = try Fixtures.temporaryDirectory("keyvault-double")
        (process, port) = try PythonDouble.launch(
            "KeyVaultDouble/keyvault_double.py",
            arguments: ["--dir", directory, "--tenant", Self.tenant, "--client-secret", Self.clientSecret],
            name: "the Key Vault double"
        )
    }

    /// Sets faults: latency_ms, throttle_every, retry_after, error_rate, drop_rate, down.
    func setFaults(_ faults: [String: Any]) throws {
        let body = String(decoding: try JSONSerialization.data(withJSONObject: faults), as: UTF8.self)
        let result = try Tool.run(
            "curl", ["-sf", "--cacert", caFile, "-X", "POST", "--data-binary", "@-", url + "/_admin/faults"],
            input: body)
        guard result.succeeded else { throw Tool.ToolMissing(name: "the double's admin endpoint (\(result.error))") }
    }

    /// A federated token as the cluster's OIDC issuer signs it (`forged`: signed by a key Entra does not trust).
    func federatedToken(subject: String? = nil, audience: String? = nil, forged: Bool = false) throws -> String {
        var request: [String: Any] = ["forged": forged]
        if let subject { request["subject"] = subject }
        if let audience { request["audience"] = audience }
        let body = String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self)
        let result = try Tool.run(
            "curl", ["-sf", "--cacert", caFile, "-X", "POST", "--data-binary", "@-", url + "/_admin/federated-token"],
            input: body)
        guard let json = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any],
            let token = json["token"] as? String
        else {
            throw Tool.ToolMissing(name: "a federated token from the double (\(result.error))")
        }
        return token
    }

    /// Every access token handed out so far stops working, as at the end of its life.
    func expireTokens() throws {
        let result = try Tool.run("curl", ["-sf", "--cacert", caFile, "-X", "POST", url + "/_admin/expire-tokens"])
        guard result.succeeded else { throw Tool.ToolMissing(name: "the double's admin endpoint (\(result.error))") }
    }

    func stats() throws -> [String: Any] {
        let result = try Tool.run("curl", ["-sf", "--cacert", caFile, url + "/_admin/stats"])
        return (try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)  // a test double: nothing to shut down gracefully
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}
