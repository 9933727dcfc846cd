/// What a URI in a certificate's subjectAltName must be (RFC 5280 §4.2.1.6): absolute, with a scheme and a host, no
/// fragment; SPIFFE IDs (what istio-csr and Istio's workloads ask for) also follow the SPIFFE ID rules: a trust domain of
/// lower-case letters, digits, '.', '-' and '_', a path of non-empty segments that are not '.' or '..', no query, no
/// port, no user info. Canonical form: scheme and host lower-cased, the path as given.
public enum URIRules {
    public static let maximumLength = 2048

    public static func validate(_ text: String) throws(NameError) -> String {
        guard !text.isEmpty, text.utf8.count <= maximumLength else {
            throw .invalidURI(text, "must be 1 to \(maximumLength) bytes")
        }
        guard text.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw .invalidURI(text, "may hold only printable ASCII, without spaces")
        }
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].hasPrefix("//") else {
            throw .invalidURI(text, "is not an absolute URI with scheme://host")
        }
        let scheme = parts[0].lowercased()
        guard let first = scheme.first, first.isLetter,
            scheme.allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) })
        else {
            throw .invalidURI(text, "has no valid scheme")
        }
        let rest = parts[1].dropFirst(2)
        guard !rest.contains("#") else { throw .invalidURI(text, "may not have a fragment") }
        let host = rest.prefix { $0 != "/" && $0 != "?" }
        let path = rest.dropFirst(host.count)
        guard !host.isEmpty, !host.contains("@") else { throw .invalidURI(text, "has no host (or has user info)") }
        if scheme == "spiffe" {
            guard host.allSatisfy({ $0.isLowercase && $0.isLetter || $0.isNumber || ".-_".contains($0) }) else {
                throw .invalidURI(text, "has a trust domain that is not lower-case letters, digits, '.', '-' and '_'")
            }
            guard !path.contains("?") else { throw .invalidURI(text, "is a SPIFFE ID and may not have a query") }
            let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            guard !path.isEmpty, !segments.dropLast().contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
                segments.last.map({ $0 != "." && $0 != ".." }) ?? false
            else {
                throw .invalidURI(text, "is a SPIFFE ID and needs a path of non-empty segments other than '.' and '..'")
            }
        }
        return scheme + "://" + host.lowercased() + path
    }
}
