/// The syntax rules a dnsName must satisfy before Signet will put it in a certificate.
///
/// A name is a hostname of LDH labels (letters, digits, hyphens; 1–63 characters, not starting or ending with a
/// hyphen), at most 253 characters in all, with no empty label. A wildcard may only be the whole left-most label
/// (`*.example.com`), and internationalised names must already be in their A-label form (`xn--…`), as RFC 5280
/// requires for dNSName. Names are compared case-insensitively and stored in lower case.
public enum HostnameRules {
    public static let maximumLength = 253
    public static let maximumLabelLength = 63

    /// Returns the canonical (lower-case) form of `name`, or throws saying exactly what is wrong with it.
    public static func validate(_ name: String) throws(NameError) -> String {
        guard !name.isEmpty else { throw .invalidDNSName(name, "is empty") }
        guard name.allSatisfy(\.isASCII) else {
            throw .invalidDNSName(
                name, "contains non-ASCII characters; internationalised names must be given as A-labels (xn--…)")
        }
        let lowered = name.lowercased()
        // A single trailing dot is the absolute form of the same name; certificates never carry it.
        guard !lowered.hasSuffix(".") else { throw .invalidDNSName(name, "ends with a dot") }
        guard lowered.utf8.count <= maximumLength else {
            throw .invalidDNSName(name, "is \(lowered.utf8.count) characters long; the limit is \(maximumLength)")
        }
        let labels = lowered.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2 || !lowered.hasPrefix("*") else {
            throw .invalidDNSName(name, "is a bare wildcard")
        }
        for (index, label) in labels.enumerated() {
            if label.isEmpty { throw .invalidDNSName(name, "has an empty label") }
            if label.contains("*") {
                guard index == 0, label == "*" else {
                    throw .invalidDNSName(name, "has a wildcard that is not the whole left-most label")
                }
                guard labels.count >= 3 else {
                    throw .invalidDNSName(name, "has a wildcard directly under a top-level domain")
                }
                continue
            }
            try validateLabel(label, in: name)
        }
        if let last = labels.last, last.allSatisfy(\.isNumber) {
            throw .invalidDNSName(
                name,
                "looks like an IP address or has an all-numeric top-level label; IP addresses belong in ipAddresses")
        }
        return lowered
    }

    private static func validateLabel(_ label: Substring, in name: String) throws(NameError) {
        guard label.utf8.count <= maximumLabelLength else {
            throw .invalidDNSName(
                name, "has the label '\(label)' of \(label.utf8.count) characters; the limit is \(maximumLabelLength)")
        }
        for character in label {
            switch character {
            case "a"..."z", "0"..."9", "-": continue
            case " ": throw .invalidDNSName(name, "contains a space")
            case "_": throw .invalidDNSName(name, "contains an underscore, which hostnames may not have")
            default: throw .invalidDNSName(name, "contains the character '\(character)', which hostnames may not have")
            }
        }
        if label.hasPrefix("-") || label.hasSuffix("-") {
            throw .invalidDNSName(name, "has the label '\(label)' starting or ending with a hyphen")
        }
        // "xn--" marks an A-label; other labels with hyphens in positions 3 and 4 are reserved (RFC 5891 §4.2.3.1).
        let characters = Array(label.utf8)
        if characters.count >= 4, characters[2] == UInt8(ascii: "-"), characters[3] == UInt8(ascii: "-"),
            !label.hasPrefix("xn--")
        {
            throw .invalidDNSName(
                name,
                "has the label '\(label)' with '--' in the third and fourth positions, which is reserved for A-labels (xn--)"
            )
        }
    }

    /// Whether the certificate name `certificateName` (possibly a wildcard) covers the host `host`.
    /// A wildcard covers exactly one label: `*.example.com` covers `a.example.com`, not `example.com` or `a.b.example.com`.
    public static func covers(_ certificateName: String, host: String) -> Bool {
        if certificateName == host { return true }
        guard certificateName.hasPrefix("*.") else { return false }
        guard let dot = host.firstIndex(of: ".") else { return false }
        return host[host.index(after: dot)...] == certificateName.dropFirst(2) && host[..<dot] != "*"
    }

    /// The wildcard name that would cover `host`, if any (`a.example.com` → `*.example.com`).
    public static func coveringWildcard(of host: String) -> String? {
        guard let dot = host.firstIndex(of: "."), !host.hasPrefix("*.") else { return nil }
        let parent = host[host.index(after: dot)...]
        guard parent.contains(".") else { return nil }
        return "*." + parent
    }
}
