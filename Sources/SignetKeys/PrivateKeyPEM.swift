import Crypto
import SwiftASN1
import X509
import _CryptoExtras

/// Reads a CA private key from PEM: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`),
/// or PKCS#8 encrypted with PBES2 (`ENCRYPTED PRIVATE KEY`: PBKDF2 with HMAC-SHA1/256/384/512, AES-CBC).
public enum PrivateKeyPEM {
    public static func read(_ pem: String, passphrase: [UInt8]? = nil) throws(KeyError) -> Certificate.PrivateKey {
        let document: PEMDocument
        do {
            document = try PEMDocument(pemString: pem)
        } catch {
            throw .notPEM
        }
        switch document.discriminator {
        case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
            do {
                return try Certificate.PrivateKey(pemDocument: document)
            } catch {
                throw .unreadable("\(document.discriminator): \(error)")
            }
        case "ENCRYPTED PRIVATE KEY":
            guard let passphrase else { throw .passphraseRequired }
            let info = try EncryptedPrivateKeyInfo.decrypt(document.derBytes, passphrase: passphrase)
            do {
                return try Certificate.PrivateKey(pemDocument: PEMDocument(type: "PRIVATE KEY", derBytes: info))
            } catch {
                throw .unreadable("the decrypted PKCS#8 key: \(error)")
            }
        default:
            throw .wrongPEMType(document.discriminator)
        }
    }

    /// Whether the PEM holds an encrypted key, so callers can ask for a passphrase only when one is needed.
    public static func isEncrypted(_ pem: String) -> Bool {
        pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    }
}

public enum KeyError: Error, Equatable, Sendable, CustomStringConvertible {
    case notPEM
    case wrongPEMType(String)
    case unreadable(String)
    case passphraseRequired
    case wrongPassphrase
    case unsupportedEncryption(String)

    public var description: String {
        switch self {
        case .notPEM: "the key file is not PEM"
        case .wrongPEMType(let type): "the key file holds a '\(type)' block, not a private key"
        case .unreadable(let reason): "the private key cannot be read: \(reason)"
        case .passphraseRequired:
            "the private key is encrypted; give its passphrase (a passphrase file or environment variable)"
        case .wrongPassphrase: "the private key could not be decrypted: wrong passphrase"
        case .unsupportedEncryption(let what):
            "the private key is encrypted with \(what), which Signet does not support; use PBES2 with PBKDF2 and AES-CBC"
        }
    }
}

/// PKCS#8 EncryptedPrivateKeyInfo with PBES2 (RFC 8018): what `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes.
enum EncryptedPrivateKeyInfo {
    static let pbes2: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 5, 13]
    static let pbkdf2: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 5, 12]
    static let pseudoRandomFunctions: [ASN1ObjectIdentifier: (KDF.Insecure.PBKDF2.HashFunction, String)] = [
        [1, 2, 840, 113_549, 2, 7]: (.insecureSHA1, "hmacWithSHA1"),
        [1, 2, 840, 113_549, 2, 9]: (.sha256, "hmacWithSHA256"),
        [1, 2, 840, 113_549, 2, 10]: (.sha384, "hmacWithSHA384"),
        [1, 2, 840, 113_549, 2, 11]: (.sha512, "hmacWithSHA512"),
    ]
    static let ciphers: [ASN1ObjectIdentifier: Int] = [
        [2, 16, 840, 1, 101, 3, 4, 1, 2]: 16,
        [2, 16, 840, 1, 101, 3, 4, 1, 22]: 24,
        [2, 16, 840, 1, 101, 3, 4, 1, 42]: 32,
    ]
    static let sha256PRF: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 2, 9]
    static let aes256CBC: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 1, 42]

    struct Parameters {
        var salt: [UInt8]
        var iterations: Int
        var prf: KDF.Insecure.PBKDF2.HashFunction
        var keyLength: Int
        var iv: [UInt8]
        var ciphertext: [UInt8]
    }

    static func decrypt(_ der: [UInt8], passphrase: [UInt8]) throws(KeyError) -> [UInt8] {
        let parameters: Parameters
        do {
            parameters = try parse(der)
        } catch let error as KeyError {
            throw error
        } catch {
            throw .unreadable("the encrypted key structure is malformed: \(error)")
        }
        do {
            let key = try KDF.Insecure.PBKDF2.deriveKey(
                from: passphrase, salt: parameters.salt, using: parameters.prf,
                outputByteCount: parameters.keyLength, unsafeUncheckedRounds: parameters.iterations
            )
            let plain = try AES._CBC.decrypt(parameters.ciphertext, using: key, iv: AES._CBC.IV(ivBytes: parameters.iv))
            // A wrong passphrase almost always fails the padding check above; when it does not, the result is not DER.
            guard (try? DER.parse(Array(plain))) != nil else { throw KeyError.wrongPassphrase }
            return Array(plain)
        } catch {
            throw .wrongPassphrase
        }
    }

    static func parse(_ der: [UInt8]) throws -> Parameters {
        try DER.sequence(try DER.parse(der), identifier: .sequence) { nodes in
            let (schemeOID, schemeParameters) = try algorithmIdentifier(&nodes)
            guard schemeOID == pbes2, let schemeParameters else {
                throw KeyError.unsupportedEncryption("the scheme \(schemeOID) (only PBES2 is supported)")
            }
            let ciphertext = try ASN1OctetString(derEncoded: &nodes).bytes
            var parameters = try DER.sequence(schemeParameters, identifier: .sequence) { pbes2Nodes in
                let (kdfOID, kdfParameters) = try algorithmIdentifier(&pbes2Nodes)
                guard kdfOID == pbkdf2, let kdfParameters else {
                    throw KeyError.unsupportedEncryption("the key derivation \(kdfOID) (only PBKDF2 is supported)")
                }
                let (cipherOID, cipherParameters) = try algorithmIdentifier(&pbes2Nodes)
                guard let keyLength = ciphers[cipherOID], let cipherParameters else {
                    throw KeyError.unsupportedEncryption(
                        "the cipher \(cipherOID) (only AES-128/192/256-CBC are supported)")
                }
                let iv = try ASN1OctetString(derEncoded: cipherParameters).bytes
                return try DER.sequence(kdfParameters, identifier: .sequence) { kdfNodes in
                    let salt = try ASN1OctetString(derEncoded: &kdfNodes).bytes
                    let iterations = try Int(derEncoded: &kdfNodes)
                    var prf = KDF.Insecure.PBKDF2.HashFunction.insecureSHA1
                    var declaredLength: Int?
                    while let node = kdfNodes.next() {
                        if node.identifier == .integer {
                            declaredLength = try Int(derEncoded: node)
                        } else {
                            let (prfOID, _) = try algorithmIdentifier(node)
                            guard let known = pseudoRandomFunctions[prfOID] else {
                                throw KeyError.unsupportedEncryption("the PBKDF2 function \(prfOID)")
                            }
                            prf = known.0
                        }
                    }
                    if let declaredLength, declaredLength != keyLength {
                        throw KeyError.unreadable("PBKDF2 key length \(declaredLength) does not fit the cipher")
                    }
                    guard iterations > 0, iterations <= 10_000_000 else {
                        throw KeyError.unreadable("PBKDF2 iteration count \(iterations) is out of range")
                    }
                    return Parameters(
                        salt: Array(salt), iterations: iterations, prf: prf, keyLength: keyLength, iv: Array(iv),
                        ciphertext: [])
                }
            }
            parameters.ciphertext = Array(ciphertext)
            return parameters
        }
    }

    /// AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }
    private static func algorithmIdentifier(_ nodes: inout ASN1NodeCollection.Iterator) throws -> (
        ASN1ObjectIdentifier, ASN1Node?
    ) {
        guard let node = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "missing AlgorithmIdentifier") }
        return try algorithmIdentifier(node)
    }

    private static func algorithmIdentifier(_ node: ASN1Node) throws -> (ASN1ObjectIdentifier, ASN1Node?) {
        try DER.sequence(node, identifier: .sequence) { inner in
            let oid = try ASN1ObjectIdentifier(derEncoded: &inner)
            return (oid, inner.next())
        }
    }

    /// Encrypts a PKCS#8 PrivateKeyInfo with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC): an EncryptedPrivateKeyInfo.
    /// 600,000 rounds by default (OWASP's figure for PBKDF2-HMAC-SHA256) for CA keys at rest.
    static func encrypt(_ privateKeyInfo: [UInt8], passphrase: [UInt8], rounds: Int = 600_000) throws -> [UInt8] {
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255) }
        let iv = AES._CBC.IV()
        let ivBytes = Array(iv)
        let key = try KDF.Insecure.PBKDF2.deriveKey(
            from: passphrase, salt: salt, using: .sha256, outputByteCount: 32, rounds: rounds)
        let ciphertext = try AES._CBC.encrypt(privateKeyInfo, using: key, iv: iv)
        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { outer in
            try outer.appendConstructedNode(identifier: .sequence) { scheme in
                try scheme.serialize(pbes2)
                try scheme.appendConstructedNode(identifier: .sequence) { parameters in
                    try parameters.appendConstructedNode(identifier: .sequence) { kdf in
                        try kdf.serialize(pbkdf2)
                        try kdf.appendConstructedNode(identifier: .sequence) { kdfParameters in
                            try kdfParameters.serialize(ASN1OctetString(contentBytes: salt[...]))
                            try kdfParameters.serialize(rounds)
                            try kdfParameters.appendConstructedNode(identifier: .sequence) { prf in
                                try prf.serialize(sha256PRF)
                                try prf.serialize(ASN1Null())
                            }
                        }
                    }
                    try parameters.appendConstructedNode(identifier: .sequence) { cipher in
                        try cipher.serialize(aes256CBC)
                        try cipher.serialize(ASN1OctetString(contentBytes: ivBytes[...]))
                    }
                }
            }
            try outer.serialize(ASN1OctetString(contentBytes: Array(ciphertext)[...]))
        }
        return serializer.serializedBytes
    }
}
