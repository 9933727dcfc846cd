import SignetACME
import SignetAuthority
import SignetKeys
import SignetKubernetes
import SignetLedger
import Yams

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

public struct KeyVaultSettings: Sendable, Equatable {
    public var url: String
    public var keyName: String
    /// Pinned, or nil for the key's current version (resolved and logged at start).
    public var keyVersion: String?
    public var apiVersion: String
    /// Extra CA bundle for the vault's TLS certificate (private endpoints behind a corporate CA; tests).
    public var caFile: String?
    /// Admission control, so Signet stays inside the vault's quota (software EC keys: 4,000 operations per 10 s
    /// per vault, shared with everything else using it).
    public var limits = SignAdmission.Limits(ratePerSecond: 200, maximumConcurrent: 32, maximumQueued: 512)
}

public struct PKCS11Settings: Sendable, Equatable {
    /// The vendor's PKCS#11 library, loaded at start (e.g. /usr/lib/softhsm/libsofthsm2.so).
    public var module: String
    public var tokenLabel: String
    /// The key pair is found by its CKA_LABEL or by its CKA_ID (hex); exactly one is set.
    public var keyLabel: String?
    public var keyID: String?
    /// The user PIN: the first line of a file, or the value of an environment variable.
    public var pinFile: String?
    public var pinEnvironmentVariable: String?
    /// The concurrency limit is also the number of sessions opened on the token.
    public var limits = SignAdmission.Limits(
        ratePerSecond: 10_000, burst: 1_000, maximumConcurrent: 4, maximumQueued: 1_024)

    public init(module: String, tokenLabel: String, keyLabel: String?, keyID: String?) {
        self.module = module
        self.tokenLabel = tokenLabel
        self.keyLabel = keyLabel
        self.keyID = keyID
    }

    /// The user PIN, read when the signer starts (never kept in the configuration).
    public func readPIN(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> [UInt8] {
        if let pinFile {
            do {
                return try PassphraseFile.read(pinFile)
            } catch {
                throw ConfigurationError("cannot read the PKCS#11 PIN file \(pinFile)")
            }
        }
        guard let name = pinEnvironmentVariable, let value = environment[name] else {
            throw ConfigurationError("the PKCS#11 PIN variable \(pinEnvironmentVariable ?? "") is not set")
        }
        return Array(value.utf8)
    }

    func validate() throws {
        guard !tokenLabel.isEmpty else {
            throw ConfigurationError("the PKCS#11 token needs its label: ca.pkcs11.tokenLabel or SIGNET_PKCS11_TOKEN")
        }
        guard (keyLabel != nil) != (keyID != nil) else {
            throw ConfigurationError(
                "the PKCS#11 key needs exactly one of keyLabel and keyId (SIGNET_PKCS11_KEY_LABEL, SIGNET_PKCS11_KEY_ID)"
            )
        }
        if let keyID, keyID.isEmpty || keyID.count % 2 != 0 || !keyID.allSatisfy(\.isHexDigit) {
            throw ConfigurationError("the PKCS#11 key id '\(keyID)' is not hex (e.g. 01 or a1b2)")
        }
        guard pinFile != nil || pinEnvironmentVariable != nil else {
            throw ConfigurationError(
                "the PKCS#11 token needs a PIN: ca.pkcs11.pinFile or pinEnv (SIGNET_PKCS11_PIN_FILE, SIGNET_PKCS11_PIN_ENV)"
            )
        }
    }
}

extension SignAdmission.Limits {
    /// Overrides whichever of the three limits are given.
    mutating func apply(_ perSecond: Double?, _ concurrent: Int?, _ queued: Int?) {
        if let perSecond {
            ratePerSecond = perSecond
            burst = max(1, perSecond / 10)
        }
        if let concurrent { maximumConcurrent = max(1, concurrent) }
        if let queued { maximumQueued = max(0, queued) }
    }
}
