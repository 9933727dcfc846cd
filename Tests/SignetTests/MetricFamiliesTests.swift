import Foundation
import SignetAuthority
import Testing

@Suite("cert-manager's per-certificate metric families")
struct MetricFamiliesTests {
    @Test(
        "one series per certificate in each family, exactly one condition at 1, label values escaped, failed attempts only where counted"
    )
    func rendering() {
        let notAfter = Date(timeIntervalSince1970: 1_900_000_000)
        let text = CertificateMetricFamilies.render(
            [
                .init(
                    labels: [("name", #"we"b\x"#), ("namespace", "team-a")], notAfter: notAfter, renewalTime: nil,
                    condition: .notReady)
            ], noun: "Certificate")
        #expect(
            text.contains(
                #"signet_certificate_expiration_timestamp_seconds{name="we\"b\\x",namespace="team-a"} 1900000000"#),
            "\(text)")
        #expect(
            text.contains(#"signet_certificate_ready_status{name="we\"b\\x",namespace="team-a",condition="False"} 1"#))
        #expect(text.contains(#"condition="True"} 0"#) && text.contains(#"condition="Unknown"} 0"#))
        #expect(!text.contains("signet_certificate_failed_attempts"), "not counted for these")
        #expect(text.contains("# TYPE signet_certificate_renewal_timestamp_seconds gauge"))
        let managed = CertificateMetricFamilies.render(
            [.init(labels: [("name", "a")], notAfter: nil, renewalTime: nil, condition: .unknown, failedAttempts: 3)],
            noun: "managed certificate")
        #expect(
            managed.contains(#"signet_certificate_failed_attempts{name="a"} 3"#)
                && managed.contains(#"signet_certificate_ready_status{name="a",condition="Unknown"} 1"#))
    }
}
