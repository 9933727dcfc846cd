import Foundation
import SignetAuthority
import SignetManaged
import Testing

/// The pure rules of managed certificates: when to renew, how failures back off, who may deliver where.
@Suite("Managed certificates: renewal schedule, targets, spec rules")
struct ManagedCertificateRulesTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("renewal is two thirds in by default, or at renewBefore / renewBeforePercentage before expiry")
    func renewalPoint() {
        let lifetime: Duration = .seconds(90 * 86_400)
        let end = start.addingTimeInterval(90 * 86_400)
        let byDefault = RenewalSchedule.renewBefore(lifetime: lifetime, seconds: nil, percentage: nil)
        #expect(
            RenewalSchedule.renewalTime(notBefore: start, notAfter: end, renewBefore: byDefault, jitter: 0)
                == start.addingTimeInterval(60 * 86_400))
        let explicit = RenewalSchedule.renewBefore(lifetime: lifetime, seconds: 7 * 86_400, percentage: nil)
        #expect(
            RenewalSchedule.renewalTime(notBefore: start, notAfter: end, renewBefore: explicit, jitter: 0)
                == end.addingTimeInterval(-7 * 86_400))
        let percentage = RenewalSchedule.renewBefore(lifetime: lifetime, seconds: nil, percentage: 50)
        #expect(
            RenewalSchedule.renewalTime(notBefore: start, notAfter: end, renewBefore: percentage, jitter: 0)
                == start.addingTimeInterval(45 * 86_400))
        // Jitter only ever brings the renewal forward, by at most a tenth of the window, and never before notBefore.
        let earliest = RenewalSchedule.renewalTime(
            notBefore: start, notAfter: end, renewBefore: byDefault, jitter: 0.999_999)
        #expect(earliest < start.addingTimeInterval(60 * 86_400) && earliest >= start.addingTimeInterval(57 * 86_400))
        let short = RenewalSchedule.renewalTime(
            notBefore: start, notAfter: start.addingTimeInterval(60), renewBefore: .seconds(59), jitter: 0.99)
        #expect(short >= start)
    }

    @Test("ten thousand certificates issued in the same minute renew spread over days, not in one minute")
    func jitterSpreadsAFleet() {
        let lifetime: Duration = .seconds(90 * 86_400)
        var perMinute: [Int: Int] = [:]
        var generator = SystemRandomNumberGenerator()
        for index in 0..<10_000 {
            let notBefore = start.addingTimeInterval(Double(index % 60))
            let time = RenewalSchedule.renewalTime(
                notBefore: notBefore, notAfter: notBefore.addingTimeInterval(90 * 86_400),
                renewBefore: RenewalSchedule.renewBefore(lifetime: lifetime, seconds: nil, percentage: nil),
                jitter: Double.random(in: 0..<1, using: &generator)
            )
            perMinute[Int(time.timeIntervalSince1970 / 60), default: 0] += 1
        }
        let span = (perMinute.keys.max()! - perMinute.keys.min()!)
        #expect(span > 3 * 24 * 60 * 9 / 10, "renewals spread over \(span) minutes")
        #expect(perMinute.values.max()! <= 12, "the busiest minute has \(perMinute.values.max()!) renewals")
    }

    @Test("failures back off from seconds, doubling, capped at ten minutes, jittered")
    func backoff() {
        let plain = (1...12).map { RenewalSchedule.retryDelay(afterFailures: $0, jitter: 0.5) }
        #expect(plain.prefix(4) == [.seconds(5), .seconds(10), .seconds(20), .seconds(40)])
        #expect(plain.last == .seconds(600) && plain.allSatisfy { $0 <= .seconds(600) })
        #expect(RenewalSchedule.retryDelay(afterFailures: 1, jitter: 0) == .seconds(4))
        let top = RenewalSchedule.retryDelay(afterFailures: 1, jitter: 0.999_999)
        #expect(top > .milliseconds(5_999) && top < .seconds(6))
        #expect(RenewalSchedule.retryDelay(afterFailures: 1_000, jitter: 0.5) == .seconds(600))
    }

    @Test("target patterns: names, '*' and one '*' within a part; malformed patterns are refused")
    func targets() throws {
        let pattern = try TargetPattern("aks-prod/istio-*/*-tls")
        #expect(
            pattern.allows(DeliveryTarget(cluster: "aks-prod", namespace: "istio-system", secretName: "httpbin-tls")))
        #expect(!pattern.allows(DeliveryTarget(cluster: "aks-prod", namespace: "default", secretName: "httpbin-tls")))
        #expect(
            !pattern.allows(DeliveryTarget(cluster: "aks-dev", namespace: "istio-system", secretName: "httpbin-tls")))
        #expect(!pattern.allows(DeliveryTarget(cluster: "aks-prod", namespace: "istio-system", secretName: "httpbin")))
        #expect(try TargetPattern("*/*/*").allows(DeliveryTarget(cluster: "a", namespace: "b", secretName: "c")))
        for bad in ["aks-prod/istio-system", "a/b/c/d", "a/**/c", "a//c", "A/b/c", "a/b/c d"] {
            #expect(throws: TargetError.self, "\(bad)") { try TargetPattern(bad) }
        }
        #expect(throws: TargetError.self) {
            try DeliveryTarget(cluster: "prod", namespace: "Istio", secretName: "x").validate()
        }
        #expect(throws: TargetError.self) {
            try DeliveryTarget(cluster: "prod", namespace: "istio", secretName: "x_y").validate()
        }
    }

    @Test("a spec is accepted only within the caller's names, profiles, lifetime and targets, and comes back canonical")
    func specRules() throws {
        var policy = try Fixtures.policy("*.example.com")
        policy.allowedTargets = [try TargetPattern("prod/istio-system/*")]
        let target = DeliveryTarget(cluster: "prod", namespace: "istio-system", secretName: "web-tls")
        let spec = ManagedCertificateSpec(
            dnsNames: ["Web.Example.com", "web.example.com"], durationSeconds: 86_400, target: target)
        let issuerEnd = start.addingTimeInterval(365 * 86_400)
        let accepted = try ManagedCertificateRules.validate(
            name: "web", spec, policy: policy, clusters: ["prod"], now: start, issuerNotAfter: issuerEnd)
        #expect(accepted.dnsNames == ["web.example.com"])

        func refusal(_ name: String = "web", _ change: (inout ManagedCertificateSpec) -> Void)
            -> ManagedCertificateRefusal?
        {
            var changed = spec
            change(&changed)
            do {
                _ = try ManagedCertificateRules.validate(
                    name: name, changed, policy: policy, clusters: ["prod"], now: start, issuerNotAfter: issuerEnd)
                return nil
            } catch {
                return error
            }
        }
        #expect(refusal { $0.dnsNames = ["web.other.org"] } == .issuance(.policy(.namesNotAllowed(["web.other.org"]))))
        #expect(
            refusal { $0.target.namespace = "default" }
                == .targetNotAllowed(DeliveryTarget(cluster: "prod", namespace: "default", secretName: "web-tls")))
        #expect(refusal { $0.dnsNames = [] } == .issuance(.noNames))
        #expect(refusal { $0.target.cluster = "staging" } == .invalid("unknown cluster 'staging'; configured: prod"))
        #expect(refusal("Web_1") { _ in } != nil)
        #expect(
            refusal { $0.durationSeconds = 30 }
                == .issuance(.policy(.lifetimeTooShort(requested: .seconds(30), minimum: .seconds(60)))))
        if case .invalid(let why)? = refusal("web", { $0.renewBeforeSeconds = 86_400 }) {
            #expect(why.contains("shorter than the duration"))
        } else {
            Issue.record("renewBefore equal to the duration was accepted")
        }
        #expect(
            refusal {
                $0.renewBeforeSeconds = 3600
                $0.renewBeforePercentage = 10
            } == .invalid("give renewBefore or renewBeforePercentage, not both"))
        #expect(refusal { $0.renewBeforePercentage = 100 } != nil)
        #expect(refusal { $0.secretLabels = ["app.kubernetes.io/managed-by": "me"] } != nil)
        #expect(refusal { $0.secretAnnotations = ["signet.dev/serial": "1"] } != nil)
        #expect(refusal { $0.secretLabels = ["team": "edge platform"] } != nil)
        #expect(
            refusal {
                $0.secretLabels = ["team": "edge"]
                $0.secretAnnotations = ["example.com/owner": "any text at all"]
            } == nil)
    }
}
