import Foundation
import SignetAuthority
import SignetController
import SignetDelivery
import SignetKeys
import SignetKubernetes
import Testing
import X509

/// The controller's pure decision: when a Certificate needs a new certificate, and when it does not.
@Suite("Reconciler: when the controller issues")
struct ReconcilerTests {
    let start = Date()

    /// A Certificate object with the given names and renewal settings.
    func certificate(_ names: [String], renewBefore: String? = nil, labels: [String: String] = [:]) throws
        -> CertificateSpec
    {
        var spec: [String: JSONValue] = [
            "secretName": .string("web-tls"), "dnsNames": .array(names.map(JSONValue.string)),
            "duration": .string("1h"),
        ]
        if let renewBefore { spec["renewBefore"] = .string(renewBefore) }
        if !labels.isEmpty { spec["secretTemplate"] = .object(["labels": .strings(labels)]) }
        return try CertificateSpec(
            KubernetesObject(.object(["metadata": .object(["name": .string("web")]), "spec": .object(spec)])))
    }

    /// A Secret as the controller writes it, with a certificate from `ca` valid from `notBefore` for `lifetime`.
    func secret(
        ca: IssuingCA, spec: CertificateSpec, notBefore: Date, lifetime: TimeInterval, key replacement: String? = nil
    ) async throws -> KubernetesObject {
        let (key, keyPEM) = try KeyAlgorithm.ecdsaP256.generate()
        let plan = try IssuanceRules.plan(
            IssuanceRequest(
                csrPEM: try KeyAlgorithm.ecdsaP256.signingRequest(for: key), dnsNames: spec.dnsNames, duration: "1h"),
            policy: try Fixtures.policy("*.example.com"), now: notBefore, issuerNotAfter: ca.certificate.notValidAfter
        )
        let leaf = try await LeafCertificateFactory.issue(
            plan, by: ca, serial: SerialNumbers.random(),
            validity: LeafCertificateFactory.validity(for: .seconds(Int64(lifetime)), now: notBefore)
        )
        var contents = TLSSecretContents(
            chain: [leaf] + ca.chainAboveLeaf, privateKeyPEM: keyPEM, root: ca.root, issuer: "test", renewAfter: start)
        contents.templateAnnotations = [
            Reconciler.specHashAnnotation: spec.issuanceHash, TLSSecret.ownerAnnotation: owner,
        ]
        var object = KubernetesObject(
            .object([
                "metadata": .object(["name": .string("web-tls"), "namespace": .string("team-a")]),
                "type": .string("kubernetes.io/tls"),
            ]))
        object.annotations = contents.templateAnnotations
        object.labels = [TLSSecret.managedByLabel: TLSSecret.managedByValue]
        object.data = [
            "tls.crt": Array(try PEMFiles.pem(contents.chain).utf8), "tls.key": Array((replacement ?? keyPEM).utf8),
            "ca.crt": Array(try PEMFiles.pem([ca.root]).utf8),
        ]
        return object
    }

    let owner = "certificate/team-a/web"

    func reason(_ decision: Reconciler.Decision) -> String {
        switch decision {
        case .issue(let reason, _), .blocked(let reason, _): reason
        case .refreshMetadata: "RefreshMetadata"
        case .upToDate: "UpToDate"
        case .backingOff: "BackingOff"
        }
    }

    @Test(
        "missing, broken, foreign, changed, expired and due Secrets are re-issued; a good one is not; labels alone are refreshed"
    )
    func decisions() async throws {
        let (ca, _) = try await Fixtures.issuingCA()
        let (otherCA, _) = try await Fixtures.issuingCA()
        let spec = try certificate(["web.example.com"], renewBefore: "20m")
        let good = try await secret(ca: ca, spec: spec, notBefore: start.addingTimeInterval(-60), lifetime: 3600)
        let roots = [ca.root]
        func decide(
            _ spec: CertificateSpec, _ secret: KubernetesObject?, at: Date? = nil, record: IssuanceRecord = .init()
        ) -> String {
            reason(
                Reconciler.decide(
                    spec: spec, secret: secret, owner: owner, mayAdopt: true, record: record, trustedRoots: roots,
                    now: at ?? start))
        }

        #expect(decide(spec, good) == "UpToDate")
        #expect(decide(spec, nil) == "DoesNotExist")
        let (_, strangerKey) = try KeyAlgorithm.ecdsaP256.generate()
        #expect(
            decide(spec, try await secret(ca: ca, spec: spec, notBefore: start, lifetime: 3600, key: strangerKey))
                == "InvalidContents")
        #expect(
            decide(spec, try await secret(ca: otherCA, spec: spec, notBefore: start, lifetime: 3600))
                == "InvalidContents")
        var garbled = good
        garbled.data["tls.crt"] = Array("not a certificate".utf8)
        #expect(decide(spec, garbled) == "InvalidContents")
        #expect(
            decide(try certificate(["web.example.com", "api.example.com"], renewBefore: "20m"), good) == "SpecChanged")
        // Someone swapped in another good certificate of this CA, for other names, keeping the annotations.
        var swapped = try await secret(
            ca: ca, spec: try certificate(["other.example.com"]), notBefore: start, lifetime: 3600)
        swapped.annotations = good.annotations
        #expect(decide(spec, swapped) == "IncorrectCertificate")
        #expect(decide(spec, good, at: start.addingTimeInterval(3700)) == "Expired")
        #expect(decide(spec, good, at: start.addingTimeInterval(2400)) == "Renewing")
        #expect(
            decide(try certificate(["web.example.com"], renewBefore: "20m", labels: ["team": "edge"]), good)
                == "RefreshMetadata")
        // Renewal settings are not part of what the certificate is: changing them moves the renewal time, no more.
        #expect(decide(try certificate(["web.example.com"], renewBefore: "10m"), good) == "UpToDate")
        // A failure backs off before the next attempt, even for a missing Secret.
        #expect(
            decide(spec, nil, record: IssuanceRecord(failedAttempts: 3, lastFailure: start.addingTimeInterval(-5)))
                == "BackingOff")
        #expect(
            decide(spec, nil, record: IssuanceRecord(failedAttempts: 1, lastFailure: start.addingTimeInterval(-30)))
                == "DoesNotExist")
    }

    @Test(
        "one owner per Secret: another owner's Secret is never issued for, adopt or not; a foreign Secret only when adopting; an unstamped Signet Secret is stamped"
    )
    func ownership() async throws {
        let (ca, _) = try await Fixtures.issuingCA()
        let spec = try certificate(["web.example.com"], renewBefore: "20m")
        let good = try await secret(ca: ca, spec: spec, notBefore: start.addingTimeInterval(-60), lifetime: 3600)
        func decide(_ secret: KubernetesObject?, mayAdopt: Bool, record: IssuanceRecord = .init()) -> String {
            reason(
                Reconciler.decide(
                    spec: spec, secret: secret, owner: owner, mayAdopt: mayAdopt, record: record,
                    trustedRoots: [ca.root], now: start))
        }
        var managedElsewhere = good
        managedElsewhere.annotations[TLSSecret.ownerAnnotation] = "managed/httpbin"
        #expect(decide(managedElsewhere, mayAdopt: true) == "SecretOwnedElsewhere")
        #expect(decide(managedElsewhere, mayAdopt: false) == "SecretOwnedElsewhere")
        // Even while backing off, the status says the Secret is not this Certificate's.
        #expect(
            decide(managedElsewhere, mayAdopt: true, record: IssuanceRecord(failedAttempts: 3, lastFailure: start))
                == "SecretOwnedElsewhere")
        var foreign = good
        foreign.labels = [:]
        foreign.annotations = [:]
        #expect(decide(foreign, mayAdopt: false) == "SecretNotManaged")
        #expect(decide(foreign, mayAdopt: true) == "SpecChanged", "a user's Certificate adopts the Secret it names")
        var opaque = good
        opaque.json["type"] = .string("Opaque")
        #expect(decide(opaque, mayAdopt: true) == "SecretNotWritable")
        var unstamped = good
        unstamped.annotations[TLSSecret.ownerAnnotation] = nil
        #expect(decide(unstamped, mayAdopt: false) == "RefreshMetadata")
        #expect(decide(good, mayAdopt: false) == "UpToDate")
    }

    @Test(
        "ca.crl: a Secret whose ca.crl is missing, stale or unwanted is rewritten (not re-issued); the current one is up to date"
    )
    func caCRL() async throws {
        let (ca, _) = try await Fixtures.issuingCA()
        let spec = try certificate(["web.example.com"], renewBefore: "20m")
        let good = try await secret(ca: ca, spec: spec, notBefore: start.addingTimeInterval(-60), lifetime: 3600)
        func decide(_ secret: KubernetesObject, _ crl: String?) -> String {
            reason(
                Reconciler.decide(
                    spec: spec, secret: secret, owner: owner, mayAdopt: false, record: .init(), trustedRoots: [ca.root],
                    caCRL: crl.map { Array($0.utf8) }, now: start))
        }
        var withCRL = good
        withCRL.data[TLSSecret.crlKey] = Array("CRL 1".utf8)
        #expect(decide(good, nil) == "UpToDate")
        #expect(decide(good, "CRL 1") == "RefreshMetadata", "missing")
        #expect(decide(withCRL, "CRL 1") == "UpToDate")
        #expect(decide(withCRL, "CRL 2") == "RefreshMetadata", "stale")
        #expect(decide(withCRL, nil) == "RefreshMetadata", "no longer wanted")
    }

    @Test("the renewal time is the same on every replica and restart, and spread across certificates")
    func renewalTimeIsStable() async throws {
        let (ca, _) = try await Fixtures.issuingCA()
        let spec = try certificate(["web.example.com"])
        var times: Set<Date> = []
        for _ in 0..<20 {
            let secret = try await secret(ca: ca, spec: spec, notBefore: start, lifetime: 3600)
            let leaf = try PEMFiles.certificates(
                in: String(decoding: secret.data["tls.crt"]!, as: UTF8.self), source: "test")[0]
            let time = Reconciler.renewalTime(of: leaf, spec: spec)
            #expect(time == Reconciler.renewalTime(of: leaf, spec: spec))
            // Valid from a minute before `start` (backdating) to an hour after: a third of 3,660 s before the end, less
            // up to a tenth of that.
            #expect(time <= start.addingTimeInterval(2381) && time >= start.addingTimeInterval(2380 - 123))
            times.insert(time)
        }
        #expect(times.count > 10, "jitter spreads certificates issued together")
    }

    @Test("a Certificate spec is read with cert-manager's names and refused with a reason")
    func specParsing() throws {
        #expect(try certificate(["web.example.com"]).keyAlgorithm == .ecdsaP256)
        func refusal(_ spec: [String: JSONValue]) -> String? {
            do {
                _ = try CertificateSpec(KubernetesObject(.object(["spec": .object(spec)])))
                return nil
            } catch {
                return error.description
            }
        }
        #expect(refusal(["dnsNames": .array([.string("a.example.com")])])?.contains("secretName") == true)
        #expect(refusal(["secretName": .string("s")])?.contains("dnsNames") == true)
        #expect(
            refusal([
                "secretName": .string("s"), "dnsNames": .array([.string("a")]), "renewBefore": .string("1h"),
                "renewBeforePercentage": .number(20),
            ])?.contains("mutually exclusive") == true)
        #expect(
            refusal([
                "secretName": .string("s"), "dnsNames": .array([.string("a")]),
                "privateKey": .object(["algorithm": .string("RSA"), "size": .number(1024)]),
            ])?.contains("RSA size 1024") == true)
        #expect(
            refusal([
                "secretName": .string("s"), "dnsNames": .array([.string("a")]), "profile": .string("code-signing"),
            ])?.contains("code-signing") == true)
        #expect(
            refusal(["secretName": .string("s"), "dnsNames": .array([.string("a")]), "caCRL": .string("yes")])?
                .contains("caCRL") == true)
        func spec(_ fields: [String: JSONValue]) throws -> CertificateSpec {
            try CertificateSpec(
                KubernetesObject(
                    .object([
                        "spec": .object(
                            ["secretName": .string("s"), "dnsNames": .array([.string("a")])].merging(fields) { $1 })
                    ])))
        }
        #expect(try spec([:]).deliversCRL == false, "a server certificate carries no ca.crl unless asked")
        #expect(try spec(["profile": .string("client")]).deliversCRL == true)
        #expect(try spec(["profile": .string("server-client")]).deliversCRL == true)
        #expect(try spec(["profile": .string("client"), "caCRL": .bool(false)]).deliversCRL == false)
        #expect(try spec(["caCRL": .bool(true)]).deliversCRL == true)
    }
}
