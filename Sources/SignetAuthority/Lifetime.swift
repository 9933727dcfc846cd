/// Parses certificate lifetimes as users write them.
///
/// Two notations are accepted:
/// - Go-style, as cert-manager and Vault write them: a sequence of number+unit with units `s`, `m`, `h`, and the
///   Signet extensions `d` (24 h) and `y` (365 d): `2160h`, `1h30m`, `90d`, `10y`.
/// - ISO 8601 durations with weeks, days, hours, minutes and seconds: `P90D`, `PT12H`, `P1W`, `P1DT12H`.
///   Years and months are refused there because their length depends on the calendar.
public enum Lifetime {
    public static func parse(_ text: String) throws(LifetimeError) -> Duration {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { throw .unparseable(text, "is empty") }
        if trimmed.hasPrefix("-") { throw .notPositive(text) }
        let seconds: Int64
        if trimmed.hasPrefix("P") || trimmed.hasPrefix("p") {
            seconds = try parseISO8601(trimmed, original: text)
        } else {
            seconds = try parseUnits(trimmed, original: text)
        }
        guard seconds > 0 else { throw .notPositive(text) }
        return .seconds(seconds)
    }

    private static func parseUnits(_ text: String, original: String) throws(LifetimeError) -> Int64 {
        var total: Int64 = 0
        var number = ""
        var sawUnit = false
        for character in text {
            if character.isASCII, character.isNumber {
                number.append(character)
                continue
            }
            guard let value = Int64(number) else {
                throw .unparseable(original, "needs a number before '\(character)'")
            }
            let unit: Int64
            switch character {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86_400
            case "y": unit = 365 * 86_400
            default:
                throw .unparseable(
                    original, "has the unknown unit '\(character)'; use s, m, h, d or y, or ISO 8601 such as P90D")
            }
            total = try add(total, value, times: unit, original: original)
            number = ""
            sawUnit = true
        }
        guard number.isEmpty, sawUnit else {
            throw .unparseable(original, "needs a unit after every number, for example 2160h or 90d")
        }
        return total
    }

    private static func parseISO8601(_ text: String, original: String) throws(LifetimeError) -> Int64 {
        var total: Int64 = 0
        var number = ""
        var inTime = false
        var sawComponent = false
        for character in text.uppercased().dropFirst() {
            if character.isASCII, character.isNumber {
                number.append(character)
                continue
            }
            if character == "T" {
                guard number.isEmpty, !inTime else { throw .unparseable(original, "is not a valid ISO 8601 duration") }
                inTime = true
                continue
            }
            guard let value = Int64(number) else { throw .unparseable(original, "is not a valid ISO 8601 duration") }
            let unit: Int64
            switch (character, inTime) {
            case ("W", false): unit = 7 * 86_400
            case ("D", false): unit = 86_400
            case ("H", true): unit = 3600
            case ("M", true): unit = 60
            case ("S", true): unit = 1
            case ("Y", false), ("M", false):
                throw .unparseable(
                    original, "uses years or months, whose length depends on the calendar; use days (P365D)")
            default:
                throw .unparseable(original, "is not a valid ISO 8601 duration")
            }
            total = try add(total, value, times: unit, original: original)
            number = ""
            sawComponent = true
        }
        guard number.isEmpty, sawComponent else { throw .unparseable(original, "is not a valid ISO 8601 duration") }
        return total
    }

    private static func add(_ total: Int64, _ value: Int64, times unit: Int64, original: String) throws(LifetimeError)
        -> Int64
    {
        let (product, overflow1) = value.multipliedReportingOverflow(by: unit)
        let (sum, overflow2) = total.addingReportingOverflow(product)
        // Nothing sensible lives past a thousand years; refusing early keeps date arithmetic in range.
        guard !overflow1, !overflow2, sum <= 1000 * 365 * 86_400 else { throw .unparseable(original, "is too large") }
        return sum
    }

    /// Formats a duration the way Signet prints policies: the largest exact unit (`90d`, `36h`, `90m`, `45s`).
    public static func format(_ duration: Duration) -> String {
        let seconds = duration.components.seconds
        for (unit, suffix) in [(Int64(86_400), "d"), (3600, "h"), (60, "m")]
        where seconds % unit == 0 && seconds >= unit {
            return "\(seconds / unit)\(suffix)"
        }
        return "\(seconds)s"
    }
}

public enum LifetimeError: Error, Equatable, Sendable, CustomStringConvertible {
    case unparseable(String, String)
    case notPositive(String)

    public var description: String {
        switch self {
        case let .unparseable(text, reason): "duration '\(text)' \(reason)"
        case let .notPositive(text): "duration '\(text)' must be positive"
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
