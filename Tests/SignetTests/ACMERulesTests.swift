import Foundation
import SignetACME
import SignetAuthority
import SignetServer
import Testing

/// The pure rules of Signet's ACME server: identifiers, a directory's policy, challenges, the state machines of
/// RFC 8555 §7.1.6, renewal information, and the `acme` configuration section.
@Suite("ACME: rules")
struct ACMERulesTests {
    @Test(
        "identifiers are canonical: DNS names lower-cased and validated, addresses in their text form; other types unsupported"
    )
    func identifiers() throws {
        #expect(
            try ACMEIdentifier.parse(type: "dns", value: "WWW.Example.COM")
                == ACMEIdentifier(type: .dns, value: "www.example.com"))
        #expect(
            try ACMEIdentifier.parse(type: "ip", value: "2001:DB8:0:0::1")
                == ACMEIdentifier(type: .ip, value: "2001:db8::1"))
        #expect(throws: ACMEError.self) { try ACMEIdentifier.parse(type: "dns", value: "10.0.0.1") }
        #expect(throws: ACMEError.self) { try ACMEIdentifier.parse(type: "dns", value: "bad_name..example.com") }
        do {
            _ = try ACMEIdentifier.parse(type: "email", value: "a@example.com")
            Issue.record("an email identifier was accepted")
        } catch {
            #expect(error.kind == .unsupportedIdentifier)
        }
        let wildcard = try ACMEIdentifier.parse(type: "dns", value: "*.apps.example.com")
        #expect(
            wildcard.isWildcard
                && wildcard.authorizationIdentifier == ACMEIdentifier(type: .dns, value: "apps.example.com"))
    }

    @Test(
        "a directory refuses names outside its patterns and the account's, and names no offered challenge can validate, one subproblem each"
    )
    func directoryPolicy() throws {
        var policy = ACMEDirectoryPolicy(
            name: "gateways", allowedNames: [try NamePattern("**.example.com"), try NamePattern("10.0.0.0/24")])
        policy.challenges = [.http01]
        let ok = [ACMEIdentifier(type: .dns, value: "a.example.com"), ACMEIdentifier(type: .ip, value: "10.0.0.7")]
        try policy.check(ok, accountNames: [])
        do {
            try policy.check(
                [
                    ACMEIdentifier(type: .dns, value: "a.example.org"),
                    ACMEIdentifier(type: .dns, value: "*.b.example.com"),
                ], accountNames: [])
            Issue.record("refused names were accepted")
        } catch {
            #expect(error.kind == .rejectedIdentifier && error.subproblems.count == 2)
            #expect(error.subproblems.map { $0.identifier?.value } == ["a.example.org", "*.b.example.com"])
            #expect(error.subproblems[1].detail.contains("only dns-01"))
        }
        #expect(throws: ACMEError.self) {
            try policy.check(
                [ACMEIdentifier(type: .dns, value: "x.example.com")],
                accountNames: [try NamePattern("*.team.example.com")])
        }
        try policy.check(
            [ACMEIdentifier(type: .dns, value: "x.team.example.com")],
            accountNames: [try NamePattern("*.team.example.com")])

        policy.challenges = [.dns01]
        #expect(throws: ACMEError.self) {
            try policy.check([ACMEIdentifier(type: .ip, value: "10.0.0.7")], accountNames: [])
        }
        policy.trustedNames = [try NamePattern("10.0.0.0/24")]
        try policy.check([ACMEIdentifier(type: .ip, value: "10.0.0.7")], accountNames: [])
        #expect(policy.profileDescriptions == ["server": "TLS server certificates (serverAuth)"])
    }

    @Test(
        "challenges: wildcards only by dns-01, addresses never by dns-01; key authorizations and digests as RFC 8555 §8 computes them"
    )
    func challenges() {
        let name = ACMEIdentifier(type: .dns, value: "example.com"),
            address = ACMEIdentifier(type: .ip, value: "10.0.0.1")
        #expect(ChallengeType.allCases.filter { $0.applies(to: name, wildcard: true) } == [.dns01])
        #expect(ChallengeType.allCases.filter { $0.applies(to: address, wildcard: false) } == [.http01, .tlsALPN01])
        // RFC 8555 §8.1's example: token and thumbprint joined by a dot; the DNS value is base64url(SHA-256(…)).
        let keyAuthorization = ChallengeType.keyAuthorization(
            token: "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
            accountThumbprint: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        #expect(
            keyAuthorization
                == "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        #expect(ChallengeType.dnsDigest(of: keyAuthorization).count == 43)
        #expect(ChallengeType.newToken().count == 22 && ChallengeType.newToken() != ChallengeType.newToken())
        #expect(
            TLSALPNChallenge.serverName(for: ACMEIdentifier(type: .ip, value: "10.0.0.1")) == "1.0.0.10.in-addr.arpa")
        #expect(
            TLSALPNChallenge.serverName(for: ACMEIdentifier(type: .ip, value: "2001:db8::1")).hasPrefix(
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"))
        #expect(TLSALPNChallenge.expectedExtensionValue(keyAuthorization: "x").prefix(2) == [0x04, 0x20])
    }

    @Test("hex text to bytes: either case, two digits a byte, anything else refused")
    func hex() {
        #expect([UInt8](hexString: "00ffA1") == [0x00, 0xff, 0xa1])
        #expect([UInt8](hexString: [UInt8]([1, 0xfe]).hexString) == [1, 0xfe])
        for bad in ["", "a", "0g", "+1", " 01", "0x01"] { #expect([UInt8](hexString: bad) == nil, "\(bad)") }
    }

    @Test("order status follows its authorizations and the clock; finalization states are final")
    func stateMachines() {
        let now = Date(), later = now.addingTimeInterval(60), earlier = now.addingTimeInterval(-60)
        #expect(
            ACMEStateMachine.orderStatus(
                stored: .pending, expires: later, authorizations: [.valid, .pending], now: now) == .pending)
        #expect(
            ACMEStateMachine.orderStatus(stored: .pending, expires: later, authorizations: [.valid, .valid], now: now)
                == .ready)
        #expect(
            ACMEStateMachine.orderStatus(
                stored: .pending, expires: later, authorizations: [.valid, .invalid], now: now) == .invalid)
        #expect(
            ACMEStateMachine.orderStatus(
                stored: .ready, expires: later, authorizations: [.valid, .deactivated], now: now) == .invalid)
        #expect(
            ACMEStateMachine.orderStatus(stored: .ready, expires: earlier, authorizations: [.valid], now: now)
                == .invalid)
        #expect(
            ACMEStateMachine.orderStatus(stored: .valid, expires: earlier, authorizations: [.expired], now: now)
                == .valid)
        #expect(
            ACMEStateMachine.orderStatus(stored: .processing, expires: later, authorizations: [.valid], now: now)
                == .processing)
        #expect(ACMEStateMachine.authorizationStatus(stored: .valid, expires: earlier, now: now) == .expired)
        #expect(ACMEStateMachine.authorizationStatus(stored: .pending, expires: earlier, now: now) == .expired)
        #expect(ACMEStateMachine.authorizationStatus(stored: .invalid, expires: earlier, now: now) == .invalid)
    }

    @Test(
        "renewal information: certificate identifiers as RFC 9773 §4.1 spells them, windows two thirds in, advanced windows already begun"
    )
    func renewalInformation() throws {
        // RFC 9773 §4.1's example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4, serial 00:87:65:43:21.
        let keyID: [UInt8] = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01,
            0xC8, 0xD4,
        ]
        let identifier = RenewalInfo.certificateID(authorityKeyID: keyID, serialBytes: [0x87, 0x65, 0x43, 0x21])
        #expect(identifier == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
        let parsed = try #require(RenewalInfo.parse(identifier))
        #expect(parsed.authorityKeyID == keyID && parsed.serialHex == "87654321")
        #expect(
            RenewalInfo.parse("no-dot") == nil && RenewalInfo.parse("a.b.c") == nil && RenewalInfo.parse(".AA") == nil)

        let notBefore = Date(timeIntervalSince1970: 1_800_000_000), notAfter = notBefore.addingTimeInterval(90 * 86_400)
        let window = RenewalInfo.window(notBefore: notBefore, notAfter: notAfter, advancedAt: nil)
        #expect(window.start < window.end)
        #expect(abs(window.end.timeIntervalSince(notBefore) - 60 * 86_400) < 1, "two thirds of 90 days")
        #expect(
            abs(window.end.timeIntervalSince(window.start) - 3 * 86_400) < 1, "a tenth of the 30-day renew-before span")
        let advanced = RenewalInfo.window(
            notBefore: notBefore, notAfter: notAfter, advancedAt: notBefore.addingTimeInterval(86_400))
        #expect(advanced.end == notBefore.addingTimeInterval(86_400) && advanced.start < advanced.end)
    }

    @Test(
        "the acme section: directories with their policy; unknown keys, bad names, patterns, challenges, profiles and resolvers are refused"
    )
    func configuration() throws {
        let path = try Fixtures.temporaryDirectory() + "/signet.yaml"
        try """
        acme:
          baseURL: https://signet.example.com/
          httpPort: 5002
          resolver: 10.0.0.10:53
          directories:
            - name: gateways
              allow: ['**.example.com']
              challenges: [dns-01]
              maxDuration: 30d
              defaultDuration: 7d
              profiles: [server-client]
              externalAccountRequired: true
              trustedNames: ['**.svc.cluster.local']
        """.write(to: path)
        let configuration = try ServerConfiguration.load(path: path, environment: [:])
        #expect(configuration.acmeBaseURL == "https://signet.example.com")
        #expect(
            configuration.acme.httpPort == 5002 && configuration.acme.tlsPort == 443
                && configuration.acme.resolver == "10.0.0.10:53")
        let directory = try #require(configuration.acme.directory(named: "gateways"))
        #expect(
            directory.challenges == [.dns01] && directory.profiles == [.serverClient]
                && directory.externalAccountRequired)
        #expect(directory.maximumLifetime == .seconds(30 * 86_400) && directory.defaultLifetime == .seconds(7 * 86_400))
        #expect(directory.trustedNames.map(\.description) == ["**.svc.cluster.local"] && !directory.alwaysValid)

        let refused: [(String, String)] = [
            (
                "acme:\n  directories:\n    - name: a\n      allow: ['*.x.com']\n      challenge: [dns-01]\n",
                "unknown setting 'acme.directories.challenge'"
            ),
            ("acme:\n  directories:\n    - name: a/b\n      allow: ['*.x.com']\n", "name may contain"),
            ("acme:\n  directories:\n    - name: a\n      allow: []\n", "lists no name pattern"),
            (
                "acme:\n  directories:\n    - name: a\n      allow: ['*.x.com']\n    - name: a\n      allow: ['*.y.com']\n",
                "used twice"
            ),
            ("acme:\n  directories:\n    - name: a\n      allow: ['a.*.com']\n", "acme.directories[0].allow"),
            (
                "acme:\n  directories:\n    - name: a\n      allow: ['*.x.com']\n      challenges: [http-02]\n",
                "not one of http-01"
            ),
            (
                "acme:\n  directories:\n    - name: a\n      allow: ['*.x.com']\n      profiles: [codesigning]\n",
                "not one of server"
            ),
            ("acme:\n  resolver: dns.example.com:53\n", "IPv4 address and port"),
            ("acme:\n  baseURL: signet.example.com\n", "http(s) URL"),
            ("acme:\n  tlsPort: 70000\n", "port number"),
        ]
        for (yaml, message) in refused {
            try yaml.write(to: path)
            do {
                _ = try ServerConfiguration.load(path: path, environment: [:])
                Issue.record("accepted: \(yaml)")
            } catch {
                #expect("\(error)".contains(message), "\(yaml) -> \(error)")
            }
        }
    }
}
