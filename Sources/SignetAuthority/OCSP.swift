import Crypto
import SwiftASN1
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// OCSP (RFC 6960) on swift-asn1, by hand: swift-certificates has an OCSP client, but its request and response types
// are internal, so a responder has to read requests and write responses itself. Everything here is pure: DER in,
// DER out, signatures through a key handed in.

public enum OCSPError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)

    public var description: String {
        switch self {
        case .malformed(let what): "the OCSP request does not parse: \(what)"
        }
    }
}

/// Which certificate a request asks about (RFC 6960 §4.1.1): hashes of its issuer's name and key, and its serial.
public struct OCSPCertID: Sendable, Hashable, DERParseable {
    public enum HashAlgorithm: Sendable, Hashable {
        case sha1, sha256
    }

    /// Nil for a hash algorithm Signet does not answer with (not SHA-1 or SHA-256).
    public let hashAlgorithm: HashAlgorithm?
    public let issuerNameHash: [UInt8]
    public let issuerKeyHash: [UInt8]
    /// The INTEGER's content bytes, as `Certificate.SerialNumber.bytes`.
    public let serial: [UInt8]
    /// The CertID as it was sent: a response answers with exactly this.
    public let der: [UInt8]

    public init(derEncoded node: ASN1Node) throws {
        der = Array(node.encodedBytes)
        (hashAlgorithm, issuerNameHash, issuerKeyHash, serial) = try DER.sequence(node, identifier: .sequence) {
            nodes in
            guard let algorithmNode = nodes.next() else { throw OCSPError.malformed("a CertID without hashAlgorithm") }
            let oid = try DER.sequence(algorithmNode, identifier: .sequence) { parts in
                let oid = try ASN1ObjectIdentifier(derEncoded: &parts)
                while parts.next() != nil {}  // parameters: NULL or absent
                return oid
            }
            let algorithm: HashAlgorithm? =
                switch oid {
                case [1, 3, 14, 3, 2, 26]: .sha1
                case [2, 16, 840, 1, 101, 3, 4, 2, 1]: .sha256
                default: nil
                }
            let nameHash = try ASN1OctetString(derEncoded: &nodes)
            let keyHash = try ASN1OctetString(derEncoded: &nodes)
            guard let serialNode = nodes.next(), serialNode.identifier == .integer,
                case .primitive(let bytes) = serialNode.content, !bytes.isEmpty
            else {
                throw OCSPError.malformed("a CertID without a serialNumber")
            }
            return (algorithm, Array(nameHash.bytes), Array(keyHash.bytes), Array(bytes))
        }
    }

    /// The two hashes this CA is known by in CertIDs made with `algorithm`: of its subject's DER and of its
    /// subjectPublicKey's contents.
    public static func issuerHashes(of issuer: Certificate, algorithm: HashAlgorithm) throws -> (
        name: [UInt8], key: [UInt8]
    ) {
        var subject = DER.Serializer()
        try subject.serialize(issuer.subject)
        // `subjectPublicKeyInfoBytes` is, despite its name, the BIT STRING's contents: what issuerKeyHash covers.
        let key = issuer.publicKey.subjectPublicKeyInfoBytes
        switch algorithm {
        case .sha1:
            return (
                Array(Insecure.SHA1.hash(data: subject.serializedBytes)), Array(Insecure.SHA1.hash(data: Array(key)))
            )
        case .sha256: return (Array(SHA256.hash(data: subject.serializedBytes)), Array(SHA256.hash(data: Array(key))))
        }
    }
}

/// An OCSPRequest (RFC 6960 §4.1.1): the certificates asked about and the nonce, if any. A signature on the request
/// is accepted and not checked: Signet answers anyone, as public responders do.
public struct OCSPRequest: Sendable {
    public let certIDs: [OCSPCertID]
    /// The nonce extension's extnValue, echoed unchanged in the response (RFC 8954).
    public let nonce: [UInt8]?

    public static let nonceOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 48, 1, 2]

    public init(derEncoded bytes: [UInt8]) throws(OCSPError) {
        do {
            let root = try DER.parse(bytes)
            (certIDs, nonce) = try DER.sequence(root, identifier: .sequence) { outer in
                guard let tbsNode = outer.next() else { throw OCSPError.malformed("no tbsRequest") }
                let parsed = try DER.sequence(tbsNode, identifier: .sequence) { tbs in
                    let version =
                        try DER.optionalExplicitlyTagged(&tbs, tagNumber: 0, tagClass: .contextSpecific) {
                            try Int(derEncoded: $0)
                        } ?? 0
                    guard version == 0 else { throw OCSPError.malformed("version \(version + 1) is not v1") }
                    // requestorName
                    _ = try DER.optionalExplicitlyTagged(&tbs, tagNumber: 1, tagClass: .contextSpecific) { $0 }
                    let requests = try DER.sequence(of: SingleRequest.self, identifier: .sequence, nodes: &tbs)
                    let extensions =
                        try DER.optionalExplicitlyTagged(&tbs, tagNumber: 2, tagClass: .contextSpecific) {
                            try DER.sequence(of: Certificate.Extension.self, identifier: .sequence, rootNode: $0)
                        } ?? []
                    return (
                        requests.map(\.certID), extensions.first { $0.oid == Self.nonceOID }.map { Array($0.value) }
                    )
                }
                // optionalSignature
                _ = try DER.optionalExplicitlyTagged(&outer, tagNumber: 0, tagClass: .contextSpecific) { $0 }
                return parsed
            }
        } catch let error as OCSPError {
            throw error
        } catch {
            throw .malformed("\(error)")
        }
        guard !certIDs.isEmpty else { throw .malformed("the requestList is empty") }
    }

    struct SingleRequest: DERParseable {
        let certID: OCSPCertID
        init(derEncoded node: ASN1Node) throws {
            certID = try DER.sequence(node, identifier: .sequence) { nodes in
                guard let idNode = nodes.next() else { throw OCSPError.malformed("a Request without reqCert") }
                let certID = try OCSPCertID(derEncoded: idNode)
                // singleRequestExtensions
                _ = try DER.optionalExplicitlyTagged(&nodes, tagNumber: 0, tagClass: .contextSpecific) { $0 }
                return certID
            }
        }
    }
}

/// The answer for one certificate.
public enum OCSPCertStatus: Sendable, Equatable {
    case good
    case revoked(at: Date, reason: RevocationReason)
    /// Not a certificate this issuer's records know.
    case unknown
}

/// One SingleResponse: the CertID asked about, its status, and how long the answer holds.
public struct OCSPSingleResponse: Sendable, Equatable {
    public var certID: [UInt8]
    public var status: OCSPCertStatus
    public var thisUpdate: Date
    public var nextUpdate: Date

    public init(certID: [UInt8], status: OCSPCertStatus, thisUpdate: Date, nextUpdate: Date) {
        self.certID = certID
        self.status = status
        self.thisUpdate = thisUpdate
        self.nextUpdate = nextUpdate
    }
}

/// OCSPResponse DER (RFC 6960 §4.2.1).
public enum OCSPResponse {
    /// The response statuses that carry no answer and no signature.
    public enum Failure: Int, Sendable {
        case malformedRequest = 1, internalError = 2, tryLater = 3, sigRequired = 5, unauthorized = 6
    }

    /// An unsuccessful OCSPResponse: the status alone.
    public static func failure(_ status: Failure) -> [UInt8] {
        [0x30, 0x03, 0x0a, 0x01, UInt8(status.rawValue)]
    }

    /// A successful OCSPResponse with a BasicOCSPResponse signed by `responderKey` (ECDSA P-256, the delegated
    /// responder's), naming the responder by key hash and carrying its certificate so clients can check the delegation.
    public static func signed(
        _ responses: [OCSPSingleResponse], producedAt: Date, responder: Certificate,
        responderKey: Certificate.PrivateKey, nonce: [UInt8]?
    ) throws -> [UInt8] {
        var data = DER.Serializer()
        try data.appendConstructedNode(identifier: .sequence) { data in
            // responderID byKey [2] EXPLICIT KeyHash: SHA-1 of the responder's subjectPublicKey contents.
            try data.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 2, tagClass: .contextSpecific)) {
                byKey in
                try byKey.serialize(
                    ASN1OctetString(
                        contentBytes: ArraySlice(
                            Insecure.SHA1.hash(data: Array(responder.publicKey.subjectPublicKeyInfoBytes)))))
            }
            try data.serialize(try generalizedTime(producedAt))
            try data.appendConstructedNode(identifier: .sequence) { list in
                for response in responses { try serialize(response, into: &list) }
            }
            if let nonce {
                try data.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific))
                { explicit in
                    try explicit.appendConstructedNode(identifier: .sequence) { extensions in
                        try RevocationList.serializeExtension(
                            oid: [1, 3, 6, 1, 5, 5, 7, 48, 1, 2], value: nonce, into: &extensions)
                    }
                }
            }
        }
        let tbs = data.serializedBytes
        let signature = try responderKey.sign(bytes: tbs, signatureAlgorithm: .ecdsaWithSHA256)
        var basic = DER.Serializer()
        try basic.appendConstructedNode(identifier: .sequence) { basic in
            basic.serializeRawBytes(tbs)
            basic.serializeRawBytes(try RevocationList.algorithmIdentifier(.ecdsaWithSHA256))
            try basic.serialize(ASN1BitString(bytes: ArraySlice(signature.rawRepresentation)))
            try basic.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                certs in
                try certs.appendConstructedNode(identifier: .sequence) { list in try list.serialize(responder) }
            }
        }
        var response = DER.Serializer()
        try response.appendConstructedNode(identifier: .sequence) { response in
            response.appendPrimitiveNode(identifier: .enumerated) { $0.append(0) }  // successful
            try response.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific))
            { explicit in
                try explicit.appendConstructedNode(identifier: .sequence) { bytes in
                    // id-pkix-ocsp-basic
                    try bytes.serialize(ASN1ObjectIdentifier(elements: [1, 3, 6, 1, 5, 5, 7, 48, 1, 1]))
                    try bytes.serialize(ASN1OctetString(contentBytes: ArraySlice(basic.serializedBytes)))
                }
            }
        }
        return response.serializedBytes
    }

    /// certStatus is IMPLICITLY tagged (the module says so explicitly): good [0] NULL and unknown [2] NULL are empty
    /// primitives, revoked [1] a constructed RevokedInfo with its reason [0] EXPLICIT.
    private static func serialize(_ response: OCSPSingleResponse, into list: inout DER.Serializer) throws {
        try list.appendConstructedNode(identifier: .sequence) { single in
            single.serializeRawBytes(response.certID)
            switch response.status {
            case .good:
                single.appendPrimitiveNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                    _ in
                }
            case let .revoked(at, reason):
                try single.appendConstructedNode(
                    identifier: ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific)
                ) { info in
                    try info.serialize(try generalizedTime(at))
                    try info.appendConstructedNode(
                        identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)
                    ) { explicit in
                        explicit.appendPrimitiveNode(identifier: .enumerated) { $0.append(UInt8(reason.rawValue)) }
                    }
                }
            case .unknown:
                single.appendPrimitiveNode(identifier: ASN1Identifier(tagWithNumber: 2, tagClass: .contextSpecific)) {
                    _ in
                }
            }
            try single.serialize(try generalizedTime(response.thisUpdate))
            try single.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                explicit in
                try explicit.serialize(try generalizedTime(response.nextUpdate))
            }
        }
    }

    /// OCSP times are always GeneralizedTime, whole seconds.
    static func generalizedTime(_ date: Date) throws -> GeneralizedTime {
        let utc = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: date)
        return try GeneralizedTime(
            year: utc.year!, month: utc.month!, day: utc.day!, hours: utc.hour!, minutes: utc.minute!,
            seconds: utc.second!,
            fractionalSeconds: 0)
    }
}
