import Crypto
import Foundation

/// The data-encryption key for private keys the ledger holds (a renewal's pending key), kept outside the database:
/// a copy of the ledger file alone reveals no key. AES-256-GCM, with the row's name as associated data so that a
/// sealed key cannot be moved to another row.
public struct LedgerKey: Sendable {
    private let key: SymmetricKey
    private static let prefix = "sealed:v1:"

    public init(base64 text: String) throws(LedgerKeyError) {
        guard let bytes = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes.count == 32
        else {
            throw .malformed("the ledger key must be 32 bytes, base64-encoded (as 'openssl rand -base64 32' prints)")
        }
        key = SymmetricKey(data: bytes)
    }

    /// Reads the key file, or creates it (0600, 32 random bytes) when it does not exist.
    public static func loadOrCreate(path: String) throws(LedgerKeyError) -> LedgerKey {
        let manager = FileManager.default
        if !manager.fileExists(atPath: path) {
            let fresh = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString() + "\n"
            guard manager.createFile(atPath: path, contents: Data(fresh.utf8), attributes: [.posixPermissions: 0o600])
            else {
                throw .unreadable("cannot create the ledger key file \(path)")
            }
        }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadable("cannot read the ledger key file \(path): \(error)")
        }
        do {
            return try LedgerKey(base64: text)
        } catch {
            throw .malformed("\(path): \(error)")
        }
    }

    public static func isSealed(_ text: String) -> Bool { text.hasPrefix(prefix) }

    public func seal(_ plaintext: String, binding: String) throws -> String {
        let box = try AES.GCM.seal(Data(plaintext.utf8), using: key, authenticating: Data(binding.utf8))
        guard let combined = box.combined else { throw LedgerKeyError.malformed("AES-GCM produced no combined form") }
        return Self.prefix + combined.base64EncodedString()
    }

    public func open(_ sealed: String, binding: String) throws -> String {
        guard Self.isSealed(sealed), let combined = Data(base64Encoded: String(sealed.dropFirst(Self.prefix.count)))
        else {
            throw LedgerKeyError.malformed("a sealed value is not in the sealed:v1 form")
        }
        do {
            let plaintext = try AES.GCM.open(
                try AES.GCM.SealedBox(combined: combined), using: key, authenticating: Data(binding.utf8))
            return String(decoding: plaintext, as: UTF8.self)
        } catch {
            throw LedgerKeyError.wrongKey
        }
    }
}

public enum LedgerKeyError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case unreadable(String)
    /// The sealed value does not open with this key (another key, or the value was altered).
    case wrongKey
    /// A private key must be stored but the ledger was opened without its key.
    case noKey

    public var description: String {
        switch self {
        case .malformed(let why), .unreadable(let why): why
        case .wrongKey:
            "a sealed private key in the ledger does not open with this ledger key (another key file, or the row was altered)"
        case .noKey: "the ledger was opened without its key (ledgerKeyFile), so it cannot store or read private keys"
        }
    }
}

/// Who may read the ledger's files: only Signet's user.
public enum LedgerFiles {
    /// Creates the database file 0600 if it does not exist yet, before SQLite does: SQLite gives the WAL and shared-
    /// memory files the database file's permissions, so they are 0600 too, whatever the umask.
    static func prepare(_ path: String) {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
    }

    /// The files (and directories) of these that group or others may read, with their modes, for start-up warnings.
    public static func widerThanOwner(_ paths: [String]) -> [(path: String, mode: Int)] {
        paths.compactMap { path in
            guard let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int,
                mode & 0o077 != 0
            else { return nil }
            return (path, mode)
        }
    }
}
