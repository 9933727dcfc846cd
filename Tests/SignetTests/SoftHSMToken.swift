import Foundation

/// A SoftHSM2 token for the whole test run, with key pairs generated on the token by pkcs11-tool (as an HSM
/// administrator would), never imported: the private keys are sensitive and never extractable.
///
/// One token directory per test process: a PKCS#11 module reads SOFTHSM2_CONF once, when it is first initialised,
/// so every in-process use must agree on it, and every key must exist before that first use.
final class SoftHSMToken: Sendable {
    static let module = "/usr/lib/softhsm/libsofthsm2.so"
    static let label = "signet-test"
    static let pin = "1234"

    /// (label, CKA_ID hex, pkcs11-tool key type)
    static let keys = [
        ("ec-p256", "01", "EC:prime256v1"),
        ("ec-p384", "02", "EC:secp384r1"),
        ("rsa-2048", "03", "rsa:2048"),
        ("other-p256", "04", "EC:prime256v1"),
    ]

    let directory: String
    let configuration: String

    /// What a child process needs to see the token and find its PIN (`--pin-env SIGNET_TEST_PIN`).
    var environment: [String: String] { ["SOFTHSM2_CONF": configuration, "SIGNET_TEST_PIN": Self.pin] }

    static func shared() throws -> SoftHSMToken { try made.get() }
    private static let made = Result { try SoftHSMToken() }

    private init() throws {
        guard FileManager.default.fileExists(atPath: Self.module), Tool.isInstalled("pkcs11-tool"),
            Tool.isInstalled("softhsm2-util")
        else {
            throw Tool.ToolMissing(name: "softhsm2 and opensc (pkcs11-tool)")
        }
        directory = try Fixtures.temporaryDirectory("signet-softhsm")
        configuration = directory + "/softhsm2.conf"
        try FileManager.default.createDirectory(atPath: directory + "/tokens", withIntermediateDirectories: true)
        try """
        directories.tokendir = \(directory)/tokens
        objectstore.backend = file
        log.level = ERROR
        slots.removable = false
        slots.mechanisms = ALL

        """.write(to: configuration)
        let environment = ["SOFTHSM2_CONF": configuration]
        let initialized = try Tool.run(
            "softhsm2-util",
            ["--init-token", "--free", "--label", Self.label, "--pin", Self.pin, "--so-pin", "12345678"],
            environment: environment)
        guard initialized.succeeded else { throw SetupFailed(what: "softhsm2-util --init-token: \(initialized.error)") }
        for (label, id, type) in Self.keys {
            let generated = try Tool.run(
                "pkcs11-tool",
                [
                    "--module", Self.module, "--token-label", Self.label, "--login", "--pin", Self.pin,
                    "--keypairgen", "--key-type", type, "--id", id, "--label", label,
                ], environment: environment)
            guard generated.succeeded else {
                throw SetupFailed(what: "pkcs11-tool --keypairgen \(type): \(generated.error)")
            }
        }
        // For the module loaded into this process (before any test loads it).
        setenv("SOFTHSM2_CONF", configuration, 1)
    }

    struct SetupFailed: Error, CustomStringConvertible {
        let what: String
        var description: String { "SoftHSM2 token setup failed: \(what)" }
    }
}
