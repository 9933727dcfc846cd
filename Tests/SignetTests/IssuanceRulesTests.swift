import Crypto
import Foundation
import SignetAuthority
import SwiftASN1
import Testing
import X509
import _CryptoExtras

@Suite("CSR and policy rules")
struct IssuanceRulesTests {
    let now = Date()
    let issuerNotAfter = Date().addingTimeInterval(5 * 365 * 86_400)

    func plan(_ request: IssuanceRequest, _ policy: IssuancePolicy? = nil) throws(IssuanceRefusal) -> IssuancePlan {
        try IssuanceRules.plan(
            request, policy: policy ?? (try! Fixtures.policy("*.example.com", "bookinfo.com", "127.0.0.0/8")), now: now,
            issuerNotAfter: issuerNotAfter)
    }

    func refusal(_ request: IssuanceRequest, _ policy: IssuancePolicy? = nil) -> IssuanceRefusal? {
        do {
            _ = try plan(request, policy)
            return nil
        } catch {
            return error
        }
    }

    @Test(
        "URI names (workload identities): SPIFFE IDs checked (lower-case trust domains, clean paths), allowed only by URI patterns (exact, or one more segment with /*), in the certificate's subjectAltName; a namespace's patterns stay in it"
    )
    func uriNames() async throws {
        let policy = try Fixtures.policy(
            "spiffe://cluster.local/ns/team-a/sa/*", "spiffe://cluster.local/ns/team-a/sa/exact/x", "*.example.com")
        let planned = try plan(
            IssuanceRequest(
                csrPEM: try Fixtures.csr(uris: ["spiffe://cluster.local/ns/team-a/sa/web"]), duration: "1h"), policy)
        #expect(planned.names.uris == ["spiffe://cluster.local/ns/team-a/sa/web"] && planned.names.dnsNames.isEmpty)
        #expect(planned.subject.isEmpty, "a URI-only certificate has an empty subject (and a critical subjectAltName)")
        #expect(
            try plan(
                IssuanceRequest(
                    csrPEM: try Fixtures.csr(
                        dnsNames: ["a.example.com"], uris: ["spiffe://cluster.local/ns/team-a/sa/exact/x"]),
                    duration: "1h"), policy
            ).names.all
                == ["a.example.com", "spiffe://cluster.local/ns/team-a/sa/exact/x"])
        for outside in [
            "spiffe://cluster.local/ns/team-b/sa/web", "spiffe://cluster.local/ns/team-a/sa/web/deeper",
            "spiffe://cluster.local/ns/team-a/sa/",
            "spiffe://other.domain/ns/team-a/sa/web", "https://cluster.local/ns/team-a/sa/web",
        ] {
            let refused = refusal(IssuanceRequest(csrPEM: try Fixtures.csr(uris: [outside]), duration: "1h"), policy)
            #expect(refused != nil, "\(outside) is refused")
        }
        for malformed in [
            "spiffe://cluster.local", "spiffe://cluster.local/ns//sa/x", "spiffe://cluster.local/ns/a?x=1",
            "spiffe://UPPER_ok/ns/../x",
            "not a uri", "spiffe://user@cluster.local/x", "spiffe://Cluster.Local/ns/team-a/sa/web",
            "spiffe://cluster.local/a#frag",
        ] {
            if case .invalidNames = refusal(
                IssuanceRequest(csrPEM: try Fixtures.csr(uris: [malformed]), duration: "1h"), policy)
            {
            } else {
                Issue.record("\(malformed) is an invalid name")
            }
        }
        let (ca, _) = try await Fixtures.issuingCA()
        let leaf = try await LeafCertificateFactory.issue(
            planned, by: ca, serial: SerialNumbers.random(),
            validity: LeafCertificateFactory.validity(for: .seconds(3600), now: now))
        let alternatives = try #require(try leaf.extensions.subjectAlternativeNames)
        #expect(Array(alternatives) == [.uniformResourceIdentifier("spiffe://cluster.local/ns/team-a/sa/web")])
        #expect(leaf.extensions[oid: .X509ExtensionID.subjectAlternativeName]?.critical == true)

        #expect(try NamePattern("spiffe://cluster.local/ns/team-a/sa/*").staysInNamespace("team-a") == true)
        #expect(try NamePattern("spiffe://cluster.local/ns/team-b/sa/*").staysInNamespace("team-a") == false)
        #expect(try NamePattern("spiffe://cluster.local/*").staysInNamespace("team-a") == false)
        #expect(try NamePattern("*.example.com").staysInNamespace("team-a") == nil)
        #expect(throws: PolicyError.self) { try NamePattern("spiffe://cluster.local/ns/*/sa/web") }
    }

    @Test("accepts P-256, P-384, RSA-2048 and Ed25519 keys")
    func acceptedKeys() throws {
        let keys: [Certificate.PrivateKey] = [
            .init(P256.Signing.PrivateKey()), .init(P384.Signing.PrivateKey()),
            .init(try _RSA.Signing.PrivateKey(keySize: .bits2048)), .init(Curve25519.Signing.PrivateKey()),
        ]
        for key in keys {
            let result = try plan(IssuanceRequest(csrPEM: try Fixtures.csr(key: key, dnsNames: ["a.example.com"])))
            #expect(result.names.dnsNames == ["a.example.com"])
        }
    }

    @Test("names come from the CSR, the body, or both when they agree")
    func namesFromEitherPlace() throws {
        let fromCSR = try plan(IssuanceRequest(csrPEM: try Fixtures.csr(dnsNames: ["A.example.com", "bookinfo.com"])))
        #expect(fromCSR.names.dnsNames == ["a.example.com", "bookinfo.com"])
        let fromBody = try plan(
            IssuanceRequest(csrPEM: try Fixtures.csr(), dnsNames: ["bookinfo.com"], ipAddresses: ["127.0.0.1"]))
        #expect(fromBody.names.all == ["bookinfo.com", "127.0.0.1"])
        let both = try plan(
            IssuanceRequest(
                csrPEM: try Fixtures.csr(dnsNames: ["bookinfo.com", "a.example.com"]),
                dnsNames: ["a.example.com", "bookinfo.com"]))
        #expect(Set(both.names.dnsNames) == ["a.example.com", "bookinfo.com"])
    }

    @Test("names given twice that disagree are refused")
    func disagreeingNames() throws {
        let error = refusal(
            IssuanceRequest(csrPEM: try Fixtures.csr(dnsNames: ["a.example.com"]), dnsNames: ["b.example.com"]))
        guard case .namesDisagree = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
    }

    @Test("a request without any name is refused")
    func noNames() throws {
        #expect(refusal(IssuanceRequest(csrPEM: try Fixtures.csr())) == .noNames)
    }

    @Test("a commonName must be one of the names")
    func commonName() throws {
        #expect(
            refusal(
                IssuanceRequest(csrPEM: try Fixtures.csr(commonName: "other.example.com", dnsNames: ["a.example.com"])))
                == .commonNameNotAmongNames("other.example.com"))
        let ok = try plan(
            IssuanceRequest(csrPEM: try Fixtures.csr(commonName: "a.example.com", dnsNames: ["a.example.com"])))
        #expect(ok.subject.description == "CN=a.example.com")
    }

    @Test("IP addresses belong in ipAddresses, not dnsNames")
    func ipInDNSNames() throws {
        let error = refusal(IssuanceRequest(csrPEM: try Fixtures.csr(), dnsNames: ["127.0.0.1"]))
        #expect(error == .invalidNames([.ipAddressInDNSNames("127.0.0.1")]))
        #expect(
            refusal(IssuanceRequest(csrPEM: try Fixtures.csr(), ipAddresses: ["300.1.1.1"]))
                == .invalidNames([.invalidIPAddress("300.1.1.1")]))
    }

    @Test("every invalid name is reported, each with its reason")
    func invalidNames() throws {
        let error = refusal(
            IssuanceRequest(
                csrPEM: try Fixtures.csr(), dnsNames: ["bad name.example.com", "a_b.example.com", "ok.example.com"]))
        guard case .invalidNames(let errors) = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
        #expect(errors.count == 2)
    }

    @Test("names outside the caller's patterns are refused, each named")
    func outsidePolicy() throws {
        let error = refusal(
            IssuanceRequest(csrPEM: try Fixtures.csr(), dnsNames: ["a.example.com", "evil.com", "a.b.example.com"]))
        #expect(error == .policy(.namesNotAllowed(["evil.com", "a.b.example.com"])))
    }

    @Test("a CSR asking for CA rights is refused")
    func caRights() throws {
        let basic = try Certificate.Extension(
            BasicConstraints.isCertificateAuthority(maxPathLength: nil), critical: true)
        let error = refusal(
            IssuanceRequest(csrPEM: try Fixtures.csr(dnsNames: ["a.example.com"], extraExtensions: [basic])))
        guard case .request(.requestsCertificateAuthority) = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
        let usage = try Certificate.Extension(KeyUsage(keyCertSign: true), critical: true)
        let usageError = refusal(
            IssuanceRequest(csrPEM: try Fixtures.csr(dnsNames: ["a.example.com"], extraExtensions: [usage])))
        guard case .request(.requestsCertificateAuthority) = usageError else {
            Issue.record("got \(String(describing: usageError))")
            return
        }
    }

    @Test("garbage, certificates and broken signatures are refused")
    func malformedCSRs() async throws {
        #expect(refusal(IssuanceRequest(csrPEM: "garbage")) == .request(.notPEM))
        let (ca, _) = try await Fixtures.issuingCA()
        #expect(
            refusal(IssuanceRequest(csrPEM: try ca.certificate.serializeAsPEM().pemString))
                == .request(.certificateInsteadOfRequest))

        var der = try PEMDocument(pemString: try Fixtures.csr(dnsNames: ["a.example.com"])).derBytes
        der[der.count - 5] ^= 0x01  // inside the signature value
        let broken = PEMDocument(type: "CERTIFICATE REQUEST", derBytes: der).pemString
        #expect(refusal(IssuanceRequest(csrPEM: broken)) == .request(.badSignature))

        let truncated = PEMDocument(type: "CERTIFICATE REQUEST", derBytes: Array(der.prefix(40))).pemString
        guard case .request(.unparseable) = refusal(IssuanceRequest(csrPEM: truncated)) else {
            Issue.record("truncated CSR accepted")
            return
        }
    }

    @Test(
        "weak and unsupported keys made by openssl are refused with the key named",
        arguments: [
            (["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"], "RSA-1024"),
            (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-224"], "ECDSA P-224"),
            (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"], "ECDSA P-521"),
        ])
    func weakKeys(_ keyArguments: [String], _ named: String) throws {
        let directory = try Fixtures.temporaryDirectory()
        try Tool.run("openssl", keyArguments + ["-out", directory + "/key.pem"])
        let made = try Tool.run(
            "openssl",
            [
                "req", "-new", "-key", directory + "/key.pem", "-subj", "/CN=a.example.com", "-addext",
                "subjectAltName=DNS:a.example.com",
            ])
        #expect(made.succeeded, "\(made.error)")
        #expect(refusal(IssuanceRequest(csrPEM: made.output)) == .request(.unacceptableKey(named)))
    }

    @Test("durations: default, within policy, too long, too short, malformed, beyond the CA")
    func durations() throws {
        let csr = try Fixtures.csr(dnsNames: ["a.example.com"])
        #expect(try plan(IssuanceRequest(csrPEM: csr)).lifetime == .seconds(90 * 86_400))
        #expect(try plan(IssuanceRequest(csrPEM: csr, duration: "720h")).lifetime == .seconds(30 * 86_400))
        #expect(
            refusal(IssuanceRequest(csrPEM: csr, duration: "2161h"))
                == .policy(.lifetimeTooLong(requested: .seconds(2161 * 3600), maximum: .seconds(2160 * 3600))))
        #expect(
            refusal(IssuanceRequest(csrPEM: csr, duration: "30s"))
                == .policy(.lifetimeTooShort(requested: .seconds(30), minimum: .seconds(60))))
        #expect(refusal(IssuanceRequest(csrPEM: csr, duration: "0h")) == .lifetime(.notPositive("0h")))
        #expect(refusal(IssuanceRequest(csrPEM: csr, duration: "-5h")) == .lifetime(.notPositive("-5h")))
        #expect {
            try IssuanceRules.plan(
                IssuanceRequest(csrPEM: csr, duration: "48h"), policy: Fixtures.policy("*.example.com"), now: now,
                issuerNotAfter: now.addingTimeInterval(86_400))
        } throws: { error in
            guard case .policy(.lifetimeBeyondIssuer) = error as? IssuanceRefusal else { return false }
            return true
        }
    }

    @Test("profiles outside the caller's policy are refused")
    func profiles() throws {
        var policy = try Fixtures.policy("*.example.com")
        policy.allowedProfiles = [.server]
        let csr = try Fixtures.csr(dnsNames: ["a.example.com"])
        #expect(
            refusal(IssuanceRequest(csrPEM: csr, profile: .client), policy)
                == .policy(.profileNotAllowed(.client, allowed: [.server])))
    }
}
