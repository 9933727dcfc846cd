import SignetAuthority

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// ACME Renewal Information (RFC 9773): certificate identifiers and the renewal window Signet suggests.
public enum RenewalInfo {
    /// A certificate's ARI identifier: base64url of its authority key identifier and of its serial number's DER
    /// INTEGER content, joined by a dot (§4.1).
    public static func certificateID(authorityKeyID: some Collection<UInt8>, serialBytes: some Collection<UInt8>)
        -> String
    {
        Base64URL.encode(Array(authorityKeyID)) + "." + Base64URL.encode(integerContent(Array(serialBytes)))
    }

    /// The two parts of a certificate identifier; nil when it is not two base64url parts.
    public static func parse(_ certificateID: String) -> (authorityKeyID: [UInt8], serialHex: String)? {
        let parts = certificateID.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let keyID = Base64URL.decode(String(parts[0])),
            let serial = Base64URL.decode(String(parts[1])),
            !keyID.isEmpty, !serial.isEmpty
        else { return nil }
        let magnitude = Array(serial.drop { $0 == 0 })
        return (Array(keyID), magnitude.hexString)
    }

    /// A serial as DER INTEGER content: a leading zero byte when the top bit is set, so it reads as positive.
    static func integerContent(_ serialBytes: [UInt8]) -> [UInt8] {
        let trimmed = Array(serialBytes.drop { $0 == 0 })
        guard let first = trimmed.first else { return [0] }
        return first & 0x80 != 0 ? [0] + trimmed : trimmed
    }

    /// The suggested window (§4.2): the same point Signet's own renewals use, two thirds into the lifetime, spread
    /// over the tenth of the renew-before span before it. A certificate to be replaced now (revoked, or brought
    /// forward by an administrator at `advancedAt`) gets a window that has already begun.
    public static func window(notBefore: Date, notAfter: Date, advancedAt: Date?) -> (start: Date, end: Date) {
        if let advancedAt {
            return (advancedAt.addingTimeInterval(-3600), advancedAt)
        }
        let lifetime = notAfter.timeIntervalSince(notBefore)
        let renewBefore = Duration.seconds(lifetime / 3)
        let end = RenewalSchedule.renewalTime(
            notBefore: notBefore, notAfter: notAfter, renewBefore: renewBefore, jitter: 0)
        let start = RenewalSchedule.renewalTime(
            notBefore: notBefore, notAfter: notAfter, renewBefore: renewBefore, jitter: 1)
        return end > start ? (start, end) : (notBefore, max(end, notBefore.addingTimeInterval(1)))
    }
}
