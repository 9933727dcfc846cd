import SignetAuthority
import SwiftASN1
import X509

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Where a CA directory keeps its files. `signet ca init` and `signet ca import` write this layout;
/// `signet serve` reads it.
public struct CADirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public var rootCertificate: String { path + "/root.crt" }
    /// The offline root's key. `ca init` writes it here so the operator can move it somewhere safe; serving never reads it.
    public var rootKey: String { path + "/root.key" }
    public var certificate: String { path + "/intermediate.crt" }
    public var key: String { path + "/intermediate.key" }
    /// Further intermediates between the issuing CA and the root, when the CA was imported with `--chain`.
    public var chain: String { path + "/chain.crt" }

    public var exists: Bool { FileManager.default.fileExists(atPath: certificate) }
}

public enum CAFileError: Error, CustomStringConvertible {
    case unreadable(String, String)
    case key(String, KeyError)
    case exists(String)
    case write(String, String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): "\(path): \(reason)"
        case let .key(path, error): "\(path): \(error)"
        case let .exists(path): "\(path) already exists; pass --force to overwrite it"
        case let .write(path, reason): "cannot write \(path): \(reason)"
        }
    }
}

/// Reading and writing PEM files with the care CA material needs.
public enum PEMFiles {
    public static func certificates(at path: String) throws -> [Certificate] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CAFileError.unreadable(path, "cannot be read (\(error))")
        }
        return try certificates(in: text, source: path)
    }

    public static func certificates(in text: String, source: String) throws -> [Certificate] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: text)
        } catch {
            throw CAFileError.unreadable(source, "is not PEM")
        }
        guard !documents.isEmpty else { throw CAFileError.unreadable(source, "holds no certificate") }
        return try documents.map { document in
            guard document.discriminator == "CERTIFICATE" else {
                throw CAFileError.unreadable(
                    source, "holds a '\(document.discriminator)' block where a CERTIFICATE belongs")
            }
            do {
                return try Certificate(derEncoded: document.derBytes)
            } catch {
                throw CAFileError.unreadable(source, "holds a certificate that does not parse: \(error)")
            }
        }
    }

    public static func pem(_ certificates: [Certificate]) throws -> String {
        try certificates.map { try $0.serializeAsPEM().pemString + "\n" }.joined()
    }

    /// Writes `contents` with `mode`, refusing to replace an existing file unless `overwrite`. The file is written
    /// beside its destination and renamed into place, so a crash never leaves half a key behind.
    public static func write(_ contents: String, to path: String, mode: mode_t, overwrite: Bool) throws {
        if !overwrite, FileManager.default.fileExists(atPath: path) { throw CAFileError.exists(path) }
        let temporary = path + ".tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard descriptor >= 0 else { throw CAFileError.write(path, String(cString: strerror(errno))) }
        let bytes = Array(contents.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == bytes.count, synced == 0 else {
            unlink(temporary)
            throw CAFileError.write(path, "short write")
        }
        // open() applies the umask; the mode must be exactly what was asked (0600 for keys).
        chmod(temporary, mode)
        if !overwrite, link(temporary, path) != 0 {
            let reason = errno == EEXIST ? nil : String(cString: strerror(errno))
            unlink(temporary)
            throw reason.map { CAFileError.write(path, $0) } ?? CAFileError.exists(path)
        } else if overwrite, rename(temporary, path) != 0 {
            unlink(temporary)
            throw CAFileError.write(path, String(cString: strerror(errno)))
        }
        unlink(temporary)
    }
}
