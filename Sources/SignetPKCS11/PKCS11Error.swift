import CPKCS11
import SignetKeys

public enum PKCS11Error: SignerFailure, Equatable, CustomStringConvertible {
    /// The library could not be loaded or is not a PKCS#11 module.
    case module(String)
    /// No such token or key.
    case notFound(String)
    /// A Cryptoki call answered something other than CKR_OK.
    case call(String, CK_RV)
    /// The token's key or its answer is not what a CA signer can use.
    case unusable(String)
    /// The token returned a signature that does not verify with the key's public key.
    case wrongSignature(String)

    public var failureKind: String {
        switch self {
        case .module: "module"
        case .notFound: "not_found"
        case .call(_, let rv) where Self.authenticationCodes.contains(rv): "authentication"
        case .call(_, let rv) where Self.deviceCodes.contains(rv): "device"
        case .call: "refused"
        case .unusable: "invalid_answer"
        case .wrongSignature: "wrong_signature"
        }
    }

    public var description: String {
        switch self {
        case .module(let what): "PKCS#11 module: \(what)"
        case .notFound(let what): "PKCS#11: \(what)"
        case let .call(function, rv): "PKCS#11 \(function) failed: \(Self.name(of: rv))"
        case .unusable(let what): "PKCS#11: \(what)"
        case .wrongSignature(let what):
            "PKCS#11 token returned a signature that does not verify with the key's public key (\(what)); it was discarded"
        }
    }

    /// Errors after which a session is not worth keeping: it, or the login behind it, or the token, is gone.
    var invalidatesSession: Bool {
        guard case .call(_, let rv) = self else { return false }
        return Self.deviceCodes.contains(rv) || rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_KEY_HANDLE_INVALID
            || rv == CKR_OBJECT_HANDLE_INVALID
    }

    private static let authenticationCodes: Set<CK_RV> = [
        CK_RV(CKR_PIN_INCORRECT), CK_RV(CKR_PIN_INVALID), CK_RV(CKR_PIN_LEN_RANGE), CK_RV(CKR_PIN_EXPIRED),
        CK_RV(CKR_PIN_LOCKED),
        CK_RV(CKR_USER_NOT_LOGGED_IN), CK_RV(CKR_USER_PIN_NOT_INITIALIZED),
    ]
    private static let deviceCodes: Set<CK_RV> = [
        CK_RV(CKR_DEVICE_ERROR), CK_RV(CKR_DEVICE_MEMORY), CK_RV(CKR_DEVICE_REMOVED), CK_RV(CKR_TOKEN_NOT_PRESENT),
        CK_RV(CKR_SESSION_CLOSED), CK_RV(CKR_SESSION_HANDLE_INVALID), CK_RV(CKR_SLOT_ID_INVALID),
        CK_RV(CKR_GENERAL_ERROR),
    ]

    /// The CKR_ name of the codes a CA operator is likely to meet, the number otherwise.
    static func name(of rv: CK_RV) -> String {
        let names: [CK_RV: String] = [
            CK_RV(CKR_GENERAL_ERROR): "CKR_GENERAL_ERROR", CK_RV(CKR_ARGUMENTS_BAD): "CKR_ARGUMENTS_BAD",
            CK_RV(CKR_DEVICE_ERROR): "CKR_DEVICE_ERROR", CK_RV(CKR_DEVICE_REMOVED): "CKR_DEVICE_REMOVED",
            CK_RV(CKR_KEY_HANDLE_INVALID): "CKR_KEY_HANDLE_INVALID",
            CK_RV(CKR_KEY_TYPE_INCONSISTENT): "CKR_KEY_TYPE_INCONSISTENT",
            CK_RV(CKR_KEY_FUNCTION_NOT_PERMITTED): "CKR_KEY_FUNCTION_NOT_PERMITTED",
            CK_RV(CKR_MECHANISM_INVALID): "CKR_MECHANISM_INVALID",
            CK_RV(CKR_OBJECT_HANDLE_INVALID): "CKR_OBJECT_HANDLE_INVALID",
            CK_RV(CKR_PIN_INCORRECT): "CKR_PIN_INCORRECT",
            CK_RV(CKR_PIN_LOCKED): "CKR_PIN_LOCKED", CK_RV(CKR_SESSION_CLOSED): "CKR_SESSION_CLOSED",
            CK_RV(CKR_SESSION_HANDLE_INVALID): "CKR_SESSION_HANDLE_INVALID",
            CK_RV(CKR_TOKEN_NOT_PRESENT): "CKR_TOKEN_NOT_PRESENT",
            CK_RV(CKR_USER_NOT_LOGGED_IN): "CKR_USER_NOT_LOGGED_IN",
            CK_RV(CKR_BUFFER_TOO_SMALL): "CKR_BUFFER_TOO_SMALL",
            CK_RV(CKR_CRYPTOKI_NOT_INITIALIZED): "CKR_CRYPTOKI_NOT_INITIALIZED",
            CK_RV(CKR_ATTRIBUTE_TYPE_INVALID): "CKR_ATTRIBUTE_TYPE_INVALID",
        ]
        return names[rv] ?? "CK_RV 0x\(String(rv, radix: 16))"
    }
}
