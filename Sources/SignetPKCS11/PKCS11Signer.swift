import CPKCS11
import Crypto
import NIOPosix
import SignetAuthority
import SignetKeys
import SwiftASN1
import X509
import _CryptoExtras

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Which key on which token: the token by its label (slot ids are not stable — SoftHSM picks a random one), the key
/// pair by its CKA_LABEL or CKA_ID, as HSM tooling (pkcs11-tool, p11tool) names them.
public struct PKCS11KeyReference: Sendable, Equatable {
    public var tokenLabel: String
    public var keyLabel: String?
    public var keyID: [UInt8]?

    public init(tokenLabel: String, keyLabel: String?, keyID: [UInt8]?) {
        self.tokenLabel = tokenLabel
        self.keyLabel = keyLabel
        self.keyID = keyID
    }

    /// An RFC 7512 PKCS#11 URI, recorded with every signature so an auditor can tell which key made it.
    public var uri: String {
        var parts = ["token=\(Self.percentEncoded(Array(tokenLabel.utf8)))"]
        if let keyLabel { parts.append("object=\(Self.percentEncoded(Array(keyLabel.utf8)))") }
        if let keyID {
            parts.append("id=" + keyID.map { "%" + String($0, radix: 16, uppercase: true).leftPadded(to: 2) }.joined())
        }
        return "pkcs11:" + parts.joined(separator: ";")
    }

    private static func percentEncoded(_ bytes: [UInt8]) -> String {
        bytes.map { byte in
            let character = Character(Unicode.Scalar(byte))
            return byte < 0x80 && (character.isLetter || character.isNumber || "-._~".contains(character))
                ? String(character) : "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
        }.joined()
    }

    /// A CKA_ID from its hex spelling ("01", "a1b2").
    public static func keyID(hex: String) -> [UInt8]? {
        [UInt8](hexString: hex)
    }
}

/// The CA key on a PKCS#11 token. The private key never leaves the token: ECDSA signs a digest Signet computes
/// (CKM_ECDSA, the one ECDSA mechanism every token has), RSA signs with CKM_SHA256/384_RSA_PKCS. Every signature
/// is verified against the key's public key before it is used.
public struct PKCS11Signer: CASigner {
    public let privateKey: Certificate.PrivateKey
    public var backend: String { "pkcs11" }
    public let reference: PKCS11KeyReference
    /// Whether the token would let the private key out (CKA_EXTRACTABLE true or CKA_SENSITIVE false). A CA key should
    /// not be; the server warns when it is.
    public let keyIsExportable: Bool
    let token: PKCS11Token

    /// Loads the module, finds the token and the key pair, and logs in. `sessions` sessions at most are opened;
    /// each signature holds one for its duration.
    public static func connect(module path: String, key reference: PKCS11KeyReference, pin: [UInt8], sessions: Int)
        async throws -> PKCS11Signer
    {
        let module = try PKCS11Module(path: path)
        let slot = try module.slot(tokenLabel: reference.tokenLabel)
        let token = PKCS11Token(module: module, slot: slot, pin: pin, sessions: max(1, sessions))
        let (handle, publicKey, exportable) = try await token.withSession { session in
            let privateKeys = try module.findObjects(
                session: session, objectClass: CK_OBJECT_CLASS(CKO_PRIVATE_KEY), label: reference.keyLabel,
                id: reference.keyID)
            guard privateKeys.count == 1 else {
                throw privateKeys.isEmpty
                    ? PKCS11Error.notFound("no private key \(reference.uri) on the token (is the PIN the user PIN?)")
                    : PKCS11Error.unusable(
                        "\(privateKeys.count) private keys match \(reference.uri); name one by label and id")
            }
            let publicKeys = try module.findObjects(
                session: session, objectClass: CK_OBJECT_CLASS(CKO_PUBLIC_KEY), label: reference.keyLabel,
                id: reference.keyID)
            guard let publicObject = publicKeys.first else {
                throw PKCS11Error.notFound(
                    "no public key object \(reference.uri) beside the private key; Signet needs it to verify signatures"
                )
            }
            let flag = { (attribute: UInt) in
                (try? module.attribute(CK_ATTRIBUTE_TYPE(attribute), of: privateKeys[0], session: session)).map {
                    $0.first.map { $0 == CK_TRUE } ?? false
                }
            }
            let exportable = flag(UInt(CKA_EXTRACTABLE)) == true || flag(UInt(CKA_SENSITIVE)) == false
            return (
                privateKeys[0], try PKCS11PublicKey.read(publicObject, module: module, session: session), exportable
            )
        }
        let key = PKCS11Key(token: token, handle: handle, publicKey: publicKey, uri: reference.uri)
        return PKCS11Signer(
            privateKey: Certificate.PrivateKey(key), reference: reference, keyIsExportable: exportable, token: token)
    }

    public func checkHealth() async throws {
        try await token.withSession { _ in try token.module.tokenPresent(slot: token.slot) }
    }
}

/// A logged-in token and a bounded pool of its sessions. Cryptoki calls block, so they run on threads of the
/// token's own pool (one per session), never on Swift's cooperative executor.
final class PKCS11Token: Sendable {
    let module: PKCS11Module
    let slot: CK_SLOT_ID
    private let pin: [UInt8]
    private let pool: SessionPool
    private let threads: NIOThreadPool

    init(module: PKCS11Module, slot: CK_SLOT_ID, pin: [UInt8], sessions: Int) {
        self.module = module
        self.slot = slot
        self.pin = pin
        self.pool = SessionPool(capacity: sessions)
        self.threads = NIOThreadPool(numberOfThreads: sessions)
        threads.start()
    }

    deinit {
        threads.shutdownGracefully { _ in }
    }

    /// Runs `body` with a session of its own. A session that failed in a way that leaves it useless (token
    /// removed, session closed, logged out) is closed and the call is tried once more on a fresh one.
    func withSession<T: Sendable>(_ body: @escaping @Sendable (CK_SESSION_HANDLE) throws -> T) async throws -> T {
        do {
            return try await attempt(body)
        } catch let error as PKCS11Error where error.invalidatesSession {
            return try await attempt(body)
        }
    }

    private func attempt<T: Sendable>(_ body: @escaping @Sendable (CK_SESSION_HANDLE) throws -> T) async throws -> T {
        let module = self.module, slot = self.slot, pin = self.pin
        let session: CK_SESSION_HANDLE
        if let idle = await pool.checkOut() {
            session = idle
        } else {
            do {
                session = try await threads.runIfActive {
                    let session = try module.openSession(slot: slot)
                    do {
                        try module.login(session: session, pin: pin)
                    } catch {
                        module.closeSession(session)
                        throw error
                    }
                    return session
                }
            } catch {
                await pool.discard()
                throw error
            }
        }
        do {
            let result = try await threads.runIfActive { try body(session) }
            await pool.checkIn(session)
            return result
        } catch let error as PKCS11Error where error.invalidatesSession {
            module.closeSession(session)
            await pool.discard()
            throw error
        } catch {
            await pool.checkIn(session)
            throw error
        }
    }
}

/// At most `capacity` sessions exist; a caller gets an idle one, or leave to open a new one (nil), or waits.
actor SessionPool {
    private let capacity: Int
    private var idle: [CK_SESSION_HANDLE] = []
    private var open = 0
    private var waiters: [CheckedContinuation<CK_SESSION_HANDLE?, Never>] = []

    init(capacity: Int) { self.capacity = capacity }

    func checkOut() async -> CK_SESSION_HANDLE? {
        if let session = idle.popLast() { return session }
        if open < capacity {
            open += 1
            return nil
        }
        return await withCheckedContinuation { waiters.append($0) }
    }

    func checkIn(_ session: CK_SESSION_HANDLE) {
        if waiters.isEmpty {
            idle.append(session)
        } else {
            waiters.removeFirst().resume(returning: session)
        }
    }

    /// A session was closed (or never opened): its place goes to a waiter, who opens a new one.
    func discard() {
        if waiters.isEmpty {
            open -= 1
        } else {
            waiters.removeFirst().resume(returning: nil)
        }
    }
}

/// The private key on the token as swift-certificates sees it.
struct PKCS11Key: CustodyKey {
    let token: PKCS11Token
    let handle: CK_OBJECT_HANDLE
    let publicKey: Certificate.PublicKey
    let uri: String

    func signSynchronously(bytes: some DataProtocol, signatureAlgorithm: Certificate.SignatureAlgorithm) throws
        -> Certificate.Signature
    {
        throw PKCS11Error.unusable("a token key signs only asynchronously")
    }

    func signAsynchronously(bytes: some DataProtocol & Sendable, signatureAlgorithm: Certificate.SignatureAlgorithm)
        async throws -> Certificate.Signature
    {
        let mechanism: CK_MECHANISM_TYPE, input: [UInt8], ecdsa: Bool
        switch signatureAlgorithm {
        case .ecdsaWithSHA256:
            (mechanism, input, ecdsa) = (CK_MECHANISM_TYPE(CKM_ECDSA), Array(SHA256.hash(data: bytes)), true)
        case .ecdsaWithSHA384:
            (mechanism, input, ecdsa) = (CK_MECHANISM_TYPE(CKM_ECDSA), Array(SHA384.hash(data: bytes)), true)
        case .sha256WithRSAEncryption:
            (mechanism, input, ecdsa) = (CK_MECHANISM_TYPE(CKM_SHA256_RSA_PKCS), Array(bytes), false)
        case .sha384WithRSAEncryption:
            (mechanism, input, ecdsa) = (CK_MECHANISM_TYPE(CKM_SHA384_RSA_PKCS), Array(bytes), false)
        default:
            throw PKCS11Error.unusable("signature algorithm \(signatureAlgorithm) is not supported with a PKCS#11 key")
        }
        let module = token.module, handle = self.handle
        let raw = try await token.withSession { session in
            try module.sign(session: session, key: handle, mechanism: mechanism, parameter: nil, data: input)
        }
        // CKM_ECDSA answers r||s; X.509 carries DER SEQUENCE { r, s }.
        guard let signatureBytes = ecdsa ? RawECDSASignature.der(raw) : raw else {
            throw PKCS11Error.unusable("an ECDSA signature of \(raw.count) bytes")
        }
        guard publicKey.isValidSignature(signatureBytes, for: bytes, signatureAlgorithm: signatureAlgorithm) else {
            throw PKCS11Error.wrongSignature(uri)
        }
        SignatureReceipt.current?.record(.init(keyVersion: uri, requestID: nil))
        return try Certificate.Signature(
            signatureAlgorithm: signatureAlgorithm, signatureBytes: ASN1BitString(bytes: signatureBytes[...]))
    }

    static func == (lhs: Self, rhs: Self) -> Bool { lhs.uri == rhs.uri && lhs.handle == rhs.handle }
    func hash(into hasher: inout Hasher) { hasher.combine(uri) }
}

/// The public half of a token key pair, read from its attributes.
enum PKCS11PublicKey {
    private static let p256 = try! ASN1ObjectIdentifier(elements: [1, 2, 840, 10045, 3, 1, 7])
    private static let p384 = try! ASN1ObjectIdentifier(elements: [1, 3, 132, 0, 34])

    static func read(_ object: CK_OBJECT_HANDLE, module: PKCS11Module, session: CK_SESSION_HANDLE) throws
        -> Certificate.PublicKey
    {
        let keyType = try module.attribute(CK_ATTRIBUTE_TYPE(CKA_KEY_TYPE), of: object, session: session)
        switch keyType.withUnsafeBytes({ $0.loadUnaligned(as: CK_KEY_TYPE.self) }) {
        case CK_KEY_TYPE(CKK_EC):
            let parameters = try module.attribute(CK_ATTRIBUTE_TYPE(CKA_EC_PARAMS), of: object, session: session)
            let encodedPoint = try module.attribute(CK_ATTRIBUTE_TYPE(CKA_EC_POINT), of: object, session: session)
            // The point is a DER OCTET STRING (PKCS#11 2.40); some modules give the bare point.
            let point = (try? ASN1OctetString(derEncoded: encodedPoint[...]).bytes).map(Array.init) ?? encodedPoint
            let curve = try ASN1ObjectIdentifier(derEncoded: parameters[...])
            switch curve {
            case p256: return .init(try P256.Signing.PublicKey(x963Representation: point))
            case p384: return .init(try P384.Signing.PublicKey(x963Representation: point))
            default: throw PKCS11Error.unusable("the token key is on curve \(curve); Signet signs with P-256 or P-384")
            }
        case CK_KEY_TYPE(CKK_RSA):
            let modulus = try module.attribute(CK_ATTRIBUTE_TYPE(CKA_MODULUS), of: object, session: session)
            let exponent = try module.attribute(CK_ATTRIBUTE_TYPE(CKA_PUBLIC_EXPONENT), of: object, session: session)
            return .init(try _RSA.Signing.PublicKey(n: modulus, e: exponent))
        case let other:
            throw PKCS11Error.unusable("the token key has key type \(other); Signet signs with EC or RSA keys")
        }
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        String(repeating: "0", count: max(0, length - count)) + self
    }
}
