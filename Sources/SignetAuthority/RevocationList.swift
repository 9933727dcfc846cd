import SwiftASN1
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// An X.509 v2 CRL (RFC 5280 §5), built on swift-asn1 because swift-certificates has no CRL type: the issuer name
/// copied from the CA certificate's DER, authorityKeyIdentifier and cRLNumber extensions, a reasonCode on each entry
/// whose reason is not unspecified, and the signature made through the CA's key (file, Key Vault or PKCS#11 alike).
public struct RevocationList: Sendable {
    public struct Entry: Sendable, Equatable {
        /// The serial's DER INTEGER content bytes (as `Certificate.SerialNumber.bytes`).
        public var serial: [UInt8]
        public var revokedAt: Date
        public var reason: RevocationReason

        public init(serial: [UInt8], revokedAt: Date, reason: RevocationReason) {
            self.serial = serial
            self.revokedAt = revokedAt
            self.reason = reason
        }
    }

    public let number: Int64
    public let thisUpdate: Date
    public let nextUpdate: Date
    public let entries: [Entry]
    /// The signed CertificateList, DER.
    public let der: [UInt8]

    public var pem: String { PEM.encode(der, type: "X509 CRL") }

    /// Builds and signs the CRL of `ca` with `entries`.
    public static func sign(
        by ca: IssuingCA, number: Int64, thisUpdate: Date, nextUpdate: Date, entries: [Entry]
    ) async throws -> RevocationList {
        let algorithm = try algorithmIdentifier(ca.signatureAlgorithm)
        var issuer = DER.Serializer()
        try issuer.serialize(ca.certificate.subject)
        var tbs = DER.Serializer()
        try tbs.appendConstructedNode(identifier: .sequence) { tbs in
            try tbs.serialize(1)  // v2
            tbs.serializeRawBytes(algorithm)
            tbs.serializeRawBytes(issuer.serializedBytes)
            try serialize(time: thisUpdate, into: &tbs)
            try serialize(time: nextUpdate, into: &tbs)
            if !entries.isEmpty {
                try tbs.appendConstructedNode(identifier: .sequence) { list in
                    for entry in entries {
                        try list.appendConstructedNode(identifier: .sequence) { revoked in
                            try revoked.serialize(ArraySlice(entry.serial))
                            try serialize(time: entry.revokedAt, into: &revoked)
                            // RFC 5280 §5.3.1: omit the extension rather than say unspecified
                            if entry.reason != .unspecified {
                                try revoked.appendConstructedNode(identifier: .sequence) { extensions in
                                    // ENUMERATED, one content octet: every reason code is below 128.
                                    try serializeExtension(
                                        oid: [2, 5, 29, 21], value: [0x0a, 0x01, UInt8(entry.reason.rawValue)],
                                        into: &extensions)
                                }
                            }
                        }
                    }
                }
            }
            try tbs.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                explicit in
                try explicit.appendConstructedNode(identifier: .sequence) { extensions in
                    var keyIdentifier = DER.Serializer()
                    try keyIdentifier.appendConstructedNode(identifier: .sequence) { sequence in
                        sequence.appendPrimitiveNode(
                            identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)
                        ) { $0.append(contentsOf: ca.keyIdentifier) }
                    }
                    try serializeExtension(
                        oid: [2, 5, 29, 35], value: keyIdentifier.serializedBytes, into: &extensions)
                    var crlNumber = DER.Serializer()
                    try crlNumber.serialize(number)
                    try serializeExtension(oid: [2, 5, 29, 20], value: crlNumber.serializedBytes, into: &extensions)
                }
            }
        }
        let tbsBytes = tbs.serializedBytes
        let signature = try await ca.key.signAsynchronously(bytes: tbsBytes, signatureAlgorithm: ca.signatureAlgorithm)
        var list = DER.Serializer()
        try list.appendConstructedNode(identifier: .sequence) { list in
            list.serializeRawBytes(tbsBytes)
            list.serializeRawBytes(algorithm)
            try list.serialize(ASN1BitString(bytes: ArraySlice(signature.rawRepresentation)))
        }
        return RevocationList(
            number: number, thisUpdate: thisUpdate, nextUpdate: nextUpdate, entries: entries, der: list.serializedBytes)
    }

    /// thisUpdate and nextUpdate of a CRL someone else signed (the root's, made offline), read from its DER.
    public static func validity(ofDER der: [UInt8]) throws -> (thisUpdate: Date, nextUpdate: Date) {
        let list = try DER.parse(der)
        guard case .constructed(let outer) = list.content, let tbsNode = outer.first(where: { _ in true }),
            case .constructed(let tbs) = tbsNode.content
        else { throw RevocationListError.malformed("not a CertificateList") }
        var times: [Date] = []
        for node in tbs where node.identifier == .utcTime || node.identifier == .generalizedTime {
            if node.identifier == .utcTime {
                let time = try UTCTime(derEncoded: node, withIdentifier: .utcTime)
                times.append(
                    try date(
                        year: time.year, month: time.month, day: time.day, hours: time.hours, minutes: time.minutes,
                        seconds: time.seconds))
            } else {
                let time = try GeneralizedTime(derEncoded: node, withIdentifier: .generalizedTime)
                times.append(
                    try date(
                        year: time.year, month: time.month, day: time.day, hours: time.hours, minutes: time.minutes,
                        seconds: time.seconds))
            }
            if times.count == 2 { break }
        }
        guard times.count == 2 else { throw RevocationListError.malformed("a CRL without thisUpdate and nextUpdate") }
        return (times[0], times[1])
    }

    private static func date(year: Int, month: Int, day: Int, hours: Int, minutes: Int, seconds: Int) throws -> Date {
        var components = DateComponents()
        (components.year, components.month, components.day) = (year, month, day)
        (components.hour, components.minute, components.second) = (hours, minutes, seconds)
        components.timeZone = TimeZone(identifier: "UTC")
        guard let date = Calendar(identifier: .gregorian).date(from: components) else {
            throw RevocationListError.malformed("an impossible time")
        }
        return date
    }

    /// UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §5.1.2.4).
    static func serialize(time: Date, into serializer: inout DER.Serializer) throws {
        let components = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: time)
        let (year, month, day) = (components.year!, components.month!, components.day!)
        let (hours, minutes, seconds) = (components.hour!, components.minute!, components.second!)
        if year < 2050 {
            try serializer.serialize(
                try UTCTime(year: year, month: month, day: day, hours: hours, minutes: minutes, seconds: seconds))
        } else {
            try serializer.serialize(
                try GeneralizedTime(
                    year: year, month: month, day: day, hours: hours, minutes: minutes, seconds: seconds,
                    fractionalSeconds: 0))
        }
    }

    static func serializeExtension(oid: [UInt], value: [UInt8], into serializer: inout DER.Serializer) throws {
        try serializer.appendConstructedNode(identifier: .sequence) { extension_ in
            try extension_.serialize(try ASN1ObjectIdentifier(elements: oid))
            try extension_.serialize(ASN1OctetString(contentBytes: ArraySlice(value)))
        }
    }

    /// The AlgorithmIdentifier DER of the algorithms a CA key here signs with (swift-certificates keeps its own
    /// encoder internal). RSA carries an explicit NULL parameter, ECDSA and Ed25519 none (RFC 5754, RFC 8410).
    static func algorithmIdentifier(_ algorithm: Certificate.SignatureAlgorithm) throws -> [UInt8] {
        let oid: [UInt], null: Bool
        switch algorithm {
        case .ecdsaWithSHA256: (oid, null) = ([1, 2, 840, 10045, 4, 3, 2], false)
        case .ecdsaWithSHA384: (oid, null) = ([1, 2, 840, 10045, 4, 3, 3], false)
        case .ecdsaWithSHA512: (oid, null) = ([1, 2, 840, 10045, 4, 3, 4], false)
        case .sha256WithRSAEncryption: (oid, null) = ([1, 2, 840, 113549, 1, 1, 11], true)
        case .sha384WithRSAEncryption: (oid, null) = ([1, 2, 840, 113549, 1, 1, 12], true)
        case .sha512WithRSAEncryption: (oid, null) = ([1, 2, 840, 113549, 1, 1, 13], true)
        case .ed25519: (oid, null) = ([1, 3, 101, 112], false)
        default: throw CAMaterialError.unsupportedKey
        }
        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { sequence in
            try sequence.serialize(try ASN1ObjectIdentifier(elements: oid))
            if null { try sequence.serialize(ASN1Null()) }
        }
        return serializer.serializedBytes
    }
}

public enum RevocationListError: Error, Equatable, CustomStringConvertible {
    case malformed(String)

    public var description: String {
        switch self {
        case .malformed(let what): "the CRL does not parse: \(what)"
        }
    }
}
