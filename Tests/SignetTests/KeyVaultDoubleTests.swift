import Foundation
import Testing

@Suite("the Key Vault test double", .serialized)
struct KeyVaultDoubleTests {
    @Test("Microsoft's SDK authenticates, creates keys, signs through the double and verifies every signature")
    func sdkFidelity() throws {
        let double = try KeyVaultDoubleProcess()
        defer { double.stop() }
        let result = try Tool.run(
            "python3",
            [
                Fixtures.packageRoot + "/Tests/KeyVaultDouble/sdk_fidelity.py", double.url, double.caFile,
                KeyVaultDoubleProcess.tenant, KeyVaultDoubleProcess.clientSecret,
            ])
        #expect(result.succeeded, "\(result.output)\(result.error)")
        #expect(
            result.output.components(separatedBy: "\n").filter { $0.hasPrefix("ok ") }.count == 6, "\(result.output)")
        let stats = try double.stats()
        #expect((stats["challenges"] as? Int ?? 0) >= 1, "the SDK went through the 401 challenge")
        #expect(((stats["token_requests"] as? [String: Int])?["client_secret"] ?? 0) >= 1)
    }

    @Test("the double answers like Key Vault: challenge, error JSON, request ids, injected throttling")
    func wireProtocol() throws {
        let double = try KeyVaultDoubleProcess()
        defer { double.stop() }
        let challenge = try Tool.run(
            "curl", ["-s", "-i", "--cacert", double.caFile, double.url + "/keys/ca?api-version=7.6"])
        #expect(challenge.output.hasPrefix("HTTP/1.1 401"))
        #expect(
            challenge.output.contains(
                #"WWW-Authenticate: Bearer authorization="\#(double.url)/\#(KeyVaultDoubleProcess.tenant)", resource="https://vault.azure.net""#
            ))
        #expect(challenge.output.contains("AKV10000"))
        #expect(challenge.output.lowercased().contains("x-ms-request-id:"))

        let token = try Tool.run(
            "curl",
            [
                "-s", "--cacert", double.caFile, "--data",
                "grant_type=client_credentials&client_id=signet&client_secret=wrong&scope=https%3A%2F%2Fvault.azure.net%2F.default",
                double.url + "/\(KeyVaultDoubleProcess.tenant)/oauth2/v2.0/token",
            ])
        #expect(token.output.contains("invalid_client"), "a wrong secret is refused the way Entra refuses it")
    }
}
