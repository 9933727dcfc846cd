import Foundation
import SignetAuthority

/// One setting's value before it is parsed, from the file or the environment, with where it came from: errors
/// name the YAML key or the environment variable the user wrote.
struct ConfigurationValue: Sendable, Equatable {
    enum Shape: Sendable, Equatable {
        case scalar(String)
        case list([String])
    }

    let shape: Shape
    /// `crl.validity` or `SIGNET_MAX_DURATION`.
    let source: String

    func text() throws -> String {
        guard case .scalar(let text) = shape else { throw ConfigurationError("\(source) takes one value, not a list") }
        return text
    }

    /// A list; from the environment, comma-separated.
    func list() -> [String] {
        switch shape {
        case .list(let items): items
        case .scalar(let text):
            text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
    }

    func bool() throws -> Bool {
        switch try text().lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        case let other: throw ConfigurationError("\(source): '\(other)' is not true or false")
        }
    }

    func number<T: LosslessStringConvertible>(_: T.Type = T.self) throws -> T {
        let text = try text()
        guard let value = T(text) else { throw ConfigurationError("\(source): '\(text)' is not a number") }
        return value
    }

    /// A limit: a number ≥ 0, where 0 turns it off.
    func nonNegative() throws -> Double {
        let value: Double = try number()
        guard value >= 0, value.isFinite else {
            throw ConfigurationError("\(source) must be a number ≥ 0 (0 turns the limit off)")
        }
        return value
    }

    func port() throws -> Int {
        let value: Int = try number()
        guard (1...65_535).contains(value) else { throw ConfigurationError("\(source) must be a port number") }
        return value
    }

    func choice<T: RawRepresentable>(_: T.Type = T.self) throws -> T where T.RawValue == String {
        let text = try text()
        guard let parsed = T(rawValue: text.lowercased()) else {
            throw ConfigurationError("\(source): '\(text)' is not a valid value")
        }
        return parsed
    }

    /// A lifetime (`90d`, `2160h`, `P60D`), at least `minimum`.
    func lifetime(atLeast minimum: Duration = .zero, _ why: String = "") throws -> Duration {
        let parsed: Duration
        do { parsed = try Lifetime.parse(try text()) } catch { throw ConfigurationError("\(source): \(error)") }
        guard parsed >= minimum else {
            throw ConfigurationError("\(source) must be at least \(Lifetime.format(minimum))\(why)")
        }
        return parsed
    }

    /// An http(s) base URL, without its trailing slash.
    func baseURL() throws -> String {
        let text = try text()
        guard text.hasPrefix("http://") || text.hasPrefix("https://") else {
            throw ConfigurationError("\(source) must be an http(s) URL, not '\(text)'")
        }
        return text.hasSuffix("/") ? String(text.dropLast()) : text
    }
}
