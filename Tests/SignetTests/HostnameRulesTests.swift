import SignetAuthority
import Testing

@Suite("dnsName syntax")
struct HostnameRulesTests {
    @Test(
        "accepts ordinary, wildcard and A-label names, lower-casing them",
        arguments: [
            ("httpbin.example.com", "httpbin.example.com"),
            ("Bookinfo.COM", "bookinfo.com"),
            ("*.example.com", "*.example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("a-b.c-d.example", "a-b.c-d.example"),
            ("localhost", "localhost"),
        ])
    func accepts(_ name: String, _ canonical: String) throws {
        #expect(try HostnameRules.validate(name) == canonical)
    }

    @Test(
        "refuses malformed names, saying why",
        arguments: [
            ("has space.example.com", "contains a space"),
            ("under_score.example.com", "underscore"),
            ("a..example.com", "empty label"),
            (".example.com", "empty label"),
            ("example.com.", "ends with a dot"),
            ("www.*.example.com", "wildcard that is not the whole left-most label"),
            ("w*.example.com", "wildcard that is not the whole left-most label"),
            ("*.com", "wildcard directly under a top-level domain"),
            ("*", "bare wildcard"),
            ("-lead.example.com", "hyphen"),
            ("trail-.example.com", "hyphen"),
            ("ab--cd.example.com", "reserved for A-labels"),
            ("bücher.example", "A-labels"),
            ("", "is empty"),
            ("10.0.0.1", "IP"),
            ("exa!mple.com", "character '!'"),
        ])
    func refuses(_ name: String, _ reason: String) {
        #expect {
            try HostnameRules.validate(name)
        } throws: { error in
            String(describing: error).contains(reason)
        }
    }

    @Test("limits a label to 63 characters and a name to 253")
    func lengthLimits() throws {
        let label63 = String(repeating: "a", count: 63)
        #expect(try HostnameRules.validate(label63 + ".example.com") == label63 + ".example.com")
        #expect(throws: NameError.self) { try HostnameRules.validate(label63 + "a.example.com") }

        let name253 =
            [String](repeating: String(repeating: "b", count: 63), count: 3).joined(separator: ".") + "."
            + String(repeating: "c", count: 53) + ".example"
        #expect(name253.count == 253)
        #expect(try HostnameRules.validate(name253) == name253)
        #expect {
            try HostnameRules.validate("c" + name253)
        } throws: { error in
            String(describing: error).contains("254 characters long")
        }
    }

    @Test("a wildcard covers exactly one label")
    func wildcardCoverage() {
        #expect(HostnameRules.covers("*.example.com", host: "a.example.com"))
        #expect(!HostnameRules.covers("*.example.com", host: "example.com"))
        #expect(!HostnameRules.covers("*.example.com", host: "a.b.example.com"))
        #expect(HostnameRules.coveringWildcard(of: "api.example.com") == "*.example.com")
        #expect(HostnameRules.coveringWildcard(of: "example.com") == nil)
    }
}

@Suite("name policy patterns")
struct NamePatternTests {
    @Test("an exact pattern allows only that name")
    func exact() throws {
        let pattern = try NamePattern("bookinfo.com")
        #expect(pattern.allows(dnsName: "bookinfo.com"))
        #expect(!pattern.allows(dnsName: "www.bookinfo.com"))
    }

    @Test("*.domain allows one label below and the wildcard itself, not the apex or deeper names")
    func oneLabel() throws {
        let pattern = try NamePattern("*.Example.com")
        #expect(pattern.allows(dnsName: "httpbin.example.com"))
        #expect(pattern.allows(dnsName: "*.example.com"))
        #expect(!pattern.allows(dnsName: "example.com"))
        #expect(!pattern.allows(dnsName: "a.b.example.com"))
        #expect(!pattern.allows(dnsName: "evilexample.com"))
    }

    @Test("**.domain allows any depth below, not the apex")
    func anyDepth() throws {
        let pattern = try NamePattern("**.example.com")
        #expect(pattern.allows(dnsName: "a.example.com"))
        #expect(pattern.allows(dnsName: "a.b.c.example.com"))
        #expect(pattern.allows(dnsName: "*.b.example.com"))
        #expect(!pattern.allows(dnsName: "example.com"))
        #expect(!pattern.allows(dnsName: "notexample.com"))
    }

    @Test("IP patterns match addresses and networks")
    func ipNetworks() throws {
        let network = try NamePattern("10.1.0.0/16")
        #expect(network.allows(ipAddress: IPAddress("10.1.200.3")!))
        #expect(!network.allows(ipAddress: IPAddress("10.2.0.1")!))
        #expect(try NamePattern("2001:db8::/32").allows(ipAddress: IPAddress("2001:db8:1::5")!))
        #expect(try NamePattern("127.0.0.1").allows(ipAddress: IPAddress("127.0.0.1")!))
        #expect(!network.allows(dnsName: "10.1.0.1"))
    }

    @Test("malformed patterns are refused", arguments: ["a..b", "*.*.example.com", "10.0.0.0/33", "ex ample.com"])
    func malformed(_ text: String) {
        #expect(throws: PolicyError.self) { try NamePattern(text) }
    }
}

@Suite("durations")
struct LifetimeTests {
    @Test(
        "Go-style and ISO 8601 durations",
        arguments: [
            ("2160h", 2160 * 3600), ("1h30m", 5400), ("90d", 90 * 86_400), ("10y", 3650 * 86_400), ("45s", 45),
            ("P90D", 90 * 86_400), ("PT12H", 12 * 3600), ("P1W", 7 * 86_400), ("P1DT12H30M", 86_400 + 12 * 3600 + 1800),
        ] as [(String, Int64)])
    func parses(_ text: String, _ seconds: Int64) throws {
        #expect(try Lifetime.parse(text) == .seconds(seconds))
    }

    @Test(
        "zero, negative and malformed durations are refused",
        arguments: ["0h", "-1h", "PT0S", "", "90", "h", "2160x", "P1Y", "P", "1h-5m"])
    func refuses(_ text: String) {
        #expect(throws: LifetimeError.self) { try Lifetime.parse(text) }
    }
}
