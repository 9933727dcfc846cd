import Foundation
import OpenAPIRuntime

/// Date-times as the API description's `format: date-time` (RFC 3339) allows them: with or without fractional
/// seconds, with `Z` or any offset; the server's and the client's alike. The runtime's default accepts only whole seconds, so a valid query such as
/// `issuedAfter=2026-01-01T10:00:00.5+01:00` was an error. Answers are written with whole seconds in UTC.
public struct RFC3339DateTranscoder: DateTranscoder {
    public init() {}

    public func encode(_ date: Date) throws -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    public func decode(_ text: String) throws -> Date {
        // ISO8601DateFormatter is not documented as thread-safe on every platform; these are cheap to make.
        for options: ISO8601DateFormatter.Options in [
            [.withInternetDateTime], [.withInternetDateTime, .withFractionalSeconds],
        ] {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return date }
        }
        throw NotADateTime(text: text)
    }

    struct NotADateTime: Error, CustomStringConvertible {
        let text: String
        var description: String { "'\(text)' is not an RFC 3339 date-time (such as 2026-12-01T10:00:00Z)" }
    }
}
