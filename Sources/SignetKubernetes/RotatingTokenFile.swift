import Foundation
import Synchronization

/// A bearer token kept in a file that the kubelet rotates (a projected service-account token): read again every
/// minute, as client-go does, and at once after the server refused it.
public final class RotatingTokenFile: Sendable {
    public struct Unreadable: Error, CustomStringConvertible {
        public let path: String
        public var description: String { "cannot read the token file \(path)" }
    }

    public let path: String
    private let cached = Mutex<(token: String, read: ContinuousClock.Instant)?>(nil)

    public init(path: String) {
        self.path = path
    }

    public func current() throws(Unreadable) -> String {
        let now = ContinuousClock.now
        return try cached.withLock { cached throws(Unreadable) -> String in
            if let cached, now - cached.read < .seconds(60) { return cached.token }
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw Unreadable(path: path) }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            cached = (token, now)
            return token
        }
    }

    /// Forgets the cached token, so the next `current()` reads the file.
    public func reload() {
        cached.withLock { $0 = nil }
    }
}
