import Crypto
import SwiftASN1
import X509

/// PKCS#12 (RFC 7292) files for applications that read keystores rather than PEM (Java, .NET): the key encrypted
/// with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), the certificates in the clear, and an HMAC-SHA256 integrity MAC.
/// This is what OpenSSL 3 writes by default, and what Java 11+ keytool and .NET read.
public enum PKCS12 {
    /// Rounds for both the key's PBKDF2 and the MAC's key derivation: swift-crypto's floor for PBKDF2. The password
    /// usually sits in a Secret beside the keystore, so the rounds guard copies of the file, not the password.
    public static let rounds = 210_000

    static let data: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 7, 1]
    static let keyBag: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 12, 10, 1, 2]
    static let certificateBag: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 12, 10, 1, 3]
    static let x509Certificate: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 9, 22, 1]
    static let localKeyID: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 9, 21]
    static let friendlyName: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 9, 20]
    /// Java's "trusted certificate entry" marker (Oracle's trustedKeyUsage), with anyExtendedKeyUsage as its value.
    static let javaTrustedUsage: ASN1ObjectIdentifier = [2, 16, 840, 1, 113_894, 746_875, 1, 1]
    static let anyExtendedKeyUsage: ASN1ObjectIdentifier = [2, 5, 29, 37, 0]
    static let sha256: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 1]

    /// A keystore: the private key (PKCS#8 DER) and its chain, leaf first, linked by a localKeyId.
    public static func keystore(
        privateKeyInfo: [UInt8], chain: [Certificate], password: String, alias: String = "certificate"
    ) throws -> [UInt8] {
        guard let leaf = chain.first else { throw PKCS12Error("a keystore needs a certificate") }
        let keyID = Array(SHA256.hash(data: try der(leaf)).prefix(20))
        let encryptedKey = try EncryptedPrivateKeyInfo.encrypt(
            privateKeyInfo, passphrase: Array(password.utf8), rounds: rounds)
        let certificates = try safeContents(
            chain.enumerated().map { index, certificate in
                try certificateBag(
                    certificate,
                    attributes: index == 0 ? [(localKeyID, .octets(keyID)), (friendlyName, .text(alias))] : [])
            })
        let key = try safeContents([
            try bag(
                keyBag, value: encryptedKey, attributes: [(localKeyID, .octets(keyID)), (friendlyName, .text(alias))])
        ])
        return try pfx([certificates, key], password: password)
    }

    /// A truststore: certificates only, each marked as trusted for Java.
    public static func truststore(_ certificates: [Certificate], password: String) throws -> [UInt8] {
        let bags = try certificates.enumerated().map { index, certificate in
            try certificateBag(
                certificate,
                attributes: [
                    (friendlyName, .text("ca-\(index)")), (javaTrustedUsage, .identifier(anyExtendedKeyUsage)),
                ])
        }
        return try pfx([try safeContents(bags)], password: password)
    }

    // MARK: Structure

    enum AttributeValue {
        case octets([UInt8])
        case text(String)
        case identifier(ASN1ObjectIdentifier)
    }

    private static func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    private static func certificateBag(_ certificate: Certificate, attributes: [(ASN1ObjectIdentifier, AttributeValue)])
        throws -> [UInt8]
    {
        let encoded = try der(certificate)
        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { bag in
            try bag.serialize(x509Certificate)
            try bag.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                explicit in
                try explicit.serialize(ASN1OctetString(contentBytes: encoded[...]))
            }
        }
        return try bag(certificateBag, value: serializer.serializedBytes, attributes: attributes)
    }

    /// SafeBag ::= SEQUENCE { bagId, [0] EXPLICIT bagValue, SET OF attributes }; `value` is DER.
    private static func bag(
        _ type: ASN1ObjectIdentifier, value: [UInt8], attributes: [(ASN1ObjectIdentifier, AttributeValue)]
    ) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { bag in
            try bag.serialize(type)
            bag.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                explicit in
                explicit.serializeRawBytes(value)
            }
            guard !attributes.isEmpty else { return }
            try bag.appendConstructedNode(identifier: .set) { set in
                for (oid, value) in attributes {
                    try set.appendConstructedNode(identifier: .sequence) { attribute in
                        try attribute.serialize(oid)
                        try attribute.appendConstructedNode(identifier: .set) { values in
                            switch value {
                            case .octets(let bytes): try values.serialize(ASN1OctetString(contentBytes: bytes[...]))
                            case .text(let text):
                                try values.serialize(ASN1BMPString(contentBytes: bmpPassword(text).dropLast(2)))
                            case .identifier(let identifier): try values.serialize(identifier)
                            }
                        }
                    }
                }
            }
        }
        return serializer.serializedBytes
    }

    private static func safeContents(_ bags: [[UInt8]]) throws -> [UInt8] {
        var serializer = DER.Serializer()
        serializer.appendConstructedNode(identifier: .sequence) { sequence in
            for bag in bags { sequence.serializeRawBytes(bag) }
        }
        return serializer.serializedBytes
    }

    /// ContentInfo ::= SEQUENCE { id-data, [0] EXPLICIT OCTET STRING }
    private static func dataContentInfo(_ content: [UInt8], into serializer: inout DER.Serializer) throws {
        try serializer.appendConstructedNode(identifier: .sequence) { info in
            try info.serialize(data)
            try info.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                explicit in
                try explicit.serialize(ASN1OctetString(contentBytes: content[...]))
            }
        }
    }

    /// PFX ::= SEQUENCE { version 3, authSafe, macData }, the MAC over the AuthenticatedSafe's DER.
    private static func pfx(_ safeContents: [[UInt8]], password: String) throws -> [UInt8] {
        var authenticatedSafe = DER.Serializer()
        try authenticatedSafe.appendConstructedNode(identifier: .sequence) { sequence in
            for contents in safeContents { try dataContentInfo(contents, into: &sequence) }
        }
        let safe = authenticatedSafe.serializedBytes
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255) }
        let macKey = derive(password: bmpPassword(password), salt: salt, id: 3, rounds: rounds)
        let mac = Array(HMAC<SHA256>.authenticationCode(for: safe, using: SymmetricKey(data: macKey)))

        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { pfx in
            try pfx.serialize(3)
            try dataContentInfo(safe, into: &pfx)
            try pfx.appendConstructedNode(identifier: .sequence) { macData in
                try macData.appendConstructedNode(identifier: .sequence) { digestInfo in
                    try digestInfo.appendConstructedNode(identifier: .sequence) { algorithm in
                        try algorithm.serialize(sha256)
                        try algorithm.serialize(ASN1Null())
                    }
                    try digestInfo.serialize(ASN1OctetString(contentBytes: mac[...]))
                }
                try macData.serialize(ASN1OctetString(contentBytes: salt[...]))
                try macData.serialize(rounds)
            }
        }
        return serializer.serializedBytes
    }

    // MARK: RFC 7292 appendix B key derivation (for the MAC only; the key itself uses PBKDF2)

    /// Text as a BMPString's content (UTF-16 big-endian) with a two-byte terminator, as the MAC's derivation wants
    /// the password (attributes drop the terminator).
    static func bmpPassword(_ password: String) -> [UInt8] {
        password.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] } + [0, 0]
    }

    /// PKCS#12 KDF with SHA-256 (u = 32, v = 64), producing 32 bytes: one block of output, so the I-update of
    /// step 6C is never needed.
    static func derive(password: [UInt8], salt: [UInt8], id: UInt8, rounds: Int) -> [UInt8] {
        let v = 64
        func stretched(_ bytes: [UInt8]) -> [UInt8] {
            guard !bytes.isEmpty else { return [] }
            let length = v * ((bytes.count + v - 1) / v)
            return (0..<length).map { bytes[$0 % bytes.count] }
        }
        var block = [UInt8](repeating: id, count: v) + stretched(salt) + stretched(password)
        for _ in 0..<rounds {
            block = Array(SHA256.hash(data: block))
        }
        return block
    }
}

public struct PKCS12Error: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
