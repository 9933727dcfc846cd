import CPKCS11

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A vendor's PKCS#11 library, loaded at run time: the handful of Cryptoki calls a CA signer needs, each
/// turning a CK_RV other than CKR_OK into a `PKCS11Error` that names the call and the code.
///
/// The module is initialised with CKF_OS_LOCKING_OK, so its functions may be called from several threads at once;
/// a single session is still never used by two threads at a time (the signer's session pool sees to that).
final class PKCS11Module: @unchecked Sendable {
    // @unchecked: both stored properties are immutable after init, and the module serialises itself internally.
    private let handle: UnsafeMutableRawPointer
    let functions: UnsafeMutablePointer<CK_FUNCTION_LIST>
    let path: String

    private typealias GetFunctionList =
        @convention(c) (UnsafeMutablePointer<UnsafeMutablePointer<CK_FUNCTION_LIST>?>?) -> CK_RV

    init(path: String) throws {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw PKCS11Error.module("cannot load \(path): \(dlerror().map { String(cString: $0) } ?? "unknown error")")
        }
        guard let symbol = dlsym(handle, "C_GetFunctionList") else {
            dlclose(handle)
            throw PKCS11Error.module("\(path) is not a PKCS#11 module (no C_GetFunctionList)")
        }
        var list: UnsafeMutablePointer<CK_FUNCTION_LIST>?
        let rv = unsafeBitCast(symbol, to: GetFunctionList.self)(&list)
        guard rv == CKR_OK, let list else {
            dlclose(handle)
            throw PKCS11Error.call("C_GetFunctionList", rv)
        }
        self.handle = handle
        self.functions = list
        self.path = path

        var arguments = CK_C_INITIALIZE_ARGS()
        arguments.flags = CK_FLAGS(CKF_OS_LOCKING_OK)
        let initialized = withUnsafeMutablePointer(to: &arguments) {
            functions.pointee.C_Initialize!(UnsafeMutableRawPointer($0))
        }
        // Another part of the process (or an earlier signer) may have initialised the module already; that is fine.
        guard initialized == CKR_OK || initialized == CKR_CRYPTOKI_ALREADY_INITIALIZED else {
            throw PKCS11Error.call("C_Initialize", initialized)
        }
    }

    /// The slot holding the token with this label (labels are blank-padded to 32 bytes on the token).
    func slot(tokenLabel: String) throws -> CK_SLOT_ID {
        var count: CK_ULONG = 0
        try check("C_GetSlotList", functions.pointee.C_GetSlotList!(CK_BBOOL(CK_TRUE), nil, &count))
        var slots = [CK_SLOT_ID](repeating: 0, count: Int(count))
        try check("C_GetSlotList", functions.pointee.C_GetSlotList!(CK_BBOOL(CK_TRUE), &slots, &count))
        var seen: [String] = []
        for slot in slots.prefix(Int(count)) {
            var info = CK_TOKEN_INFO()
            guard functions.pointee.C_GetTokenInfo!(slot, &info) == CKR_OK else { continue }
            let label = withUnsafeBytes(of: info.label) { String(decoding: $0, as: UTF8.self) }
                .trimmingTrailing(" ")
            if label == tokenLabel { return slot }
            if !label.isEmpty { seen.append(label) }  // SoftHSM always offers one uninitialised, unlabelled slot
        }
        throw PKCS11Error.notFound(
            "no token labelled '\(tokenLabel)' in \(path) (tokens present: \(seen.isEmpty ? "none" : seen.joined(separator: ", ")))"
        )
    }

    func openSession(slot: CK_SLOT_ID) throws -> CK_SESSION_HANDLE {
        var session: CK_SESSION_HANDLE = 0
        try check(
            "C_OpenSession", functions.pointee.C_OpenSession!(slot, CK_FLAGS(CKF_SERIAL_SESSION), nil, nil, &session))
        return session
    }

    /// Logs the user in. A login covers every session of the application on that token, so a second login is
    /// answered with CKR_USER_ALREADY_LOGGED_IN, which counts as success.
    func login(session: CK_SESSION_HANDLE, pin: [UInt8]) throws {
        var pin = pin
        let rv = functions.pointee.C_Login!(session, CK_USER_TYPE(CKU_USER), &pin, CK_ULONG(pin.count))
        guard rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN else { throw PKCS11Error.call("C_Login", rv) }
    }

    func closeSession(_ session: CK_SESSION_HANDLE) {
        _ = functions.pointee.C_CloseSession!(session)
    }

    /// Handles of the objects of `objectClass` whose label or id is the one given.
    func findObjects(session: CK_SESSION_HANDLE, objectClass: CK_OBJECT_CLASS, label: String?, id: [UInt8]?) throws
        -> [CK_OBJECT_HANDLE]
    {
        var objectClass = objectClass
        var labelBytes = Array((label ?? "").utf8)
        var idBytes = id ?? []
        return try withUnsafeMutableBytes(of: &objectClass) { classPointer in
            try labelBytes.withUnsafeMutableBytes { labelPointer in
                try idBytes.withUnsafeMutableBytes { idPointer in
                    var template = [
                        CK_ATTRIBUTE(
                            type: CK_ATTRIBUTE_TYPE(CKA_CLASS), pValue: classPointer.baseAddress,
                            ulValueLen: CK_ULONG(classPointer.count))
                    ]
                    if label != nil {
                        template.append(
                            CK_ATTRIBUTE(
                                type: CK_ATTRIBUTE_TYPE(CKA_LABEL), pValue: labelPointer.baseAddress,
                                ulValueLen: CK_ULONG(labelPointer.count)))
                    }
                    if id != nil {
                        template.append(
                            CK_ATTRIBUTE(
                                type: CK_ATTRIBUTE_TYPE(CKA_ID), pValue: idPointer.baseAddress,
                                ulValueLen: CK_ULONG(idPointer.count)))
                    }
                    try check(
                        "C_FindObjectsInit",
                        functions.pointee.C_FindObjectsInit!(session, &template, CK_ULONG(template.count)))
                    defer { _ = functions.pointee.C_FindObjectsFinal!(session) }
                    var found = [CK_OBJECT_HANDLE](repeating: 0, count: 8)
                    var count: CK_ULONG = 0
                    try check(
                        "C_FindObjects",
                        functions.pointee.C_FindObjects!(session, &found, CK_ULONG(found.count), &count))
                    return Array(found.prefix(Int(count)))
                }
            }
        }
    }

    /// One attribute's value (two calls: the length, then the bytes).
    func attribute(_ type: CK_ATTRIBUTE_TYPE, of object: CK_OBJECT_HANDLE, session: CK_SESSION_HANDLE) throws -> [UInt8]
    {
        var probe = CK_ATTRIBUTE(type: type, pValue: nil, ulValueLen: 0)
        try check("C_GetAttributeValue", functions.pointee.C_GetAttributeValue!(session, object, &probe, 1))
        var value = [UInt8](repeating: 0, count: Int(probe.ulValueLen))
        try value.withUnsafeMutableBytes { buffer in
            var read = CK_ATTRIBUTE(type: type, pValue: buffer.baseAddress, ulValueLen: CK_ULONG(buffer.count))
            try check("C_GetAttributeValue", functions.pointee.C_GetAttributeValue!(session, object, &read, 1))
        }
        return value
    }

    /// One signature with `mechanism` (and its parameter, for PSS). The output buffer is sized for any RSA key up
    /// to 16384 bits and any ECDSA curve, so one C_Sign call suffices.
    func sign(
        session: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE, mechanism: CK_MECHANISM_TYPE, parameter: [UInt8]?,
        data: [UInt8]
    ) throws -> [UInt8] {
        var parameterBytes = parameter ?? []
        try parameterBytes.withUnsafeMutableBytes { parameterPointer in
            var mechanism = CK_MECHANISM(
                mechanism: mechanism,
                pParameter: parameter == nil ? nil : parameterPointer.baseAddress,
                ulParameterLen: CK_ULONG(parameter == nil ? 0 : parameterPointer.count)
            )
            try check("C_SignInit", functions.pointee.C_SignInit!(session, &mechanism, key))
        }
        var input = data
        var output = [UInt8](repeating: 0, count: 2048)
        var length = CK_ULONG(output.count)
        try check("C_Sign", functions.pointee.C_Sign!(session, &input, CK_ULONG(input.count), &output, &length))
        return Array(output.prefix(Int(length)))
    }

    /// Whether the token is still there and answering (for /readyz).
    func tokenPresent(slot: CK_SLOT_ID) throws {
        var info = CK_TOKEN_INFO()
        try check("C_GetTokenInfo", functions.pointee.C_GetTokenInfo!(slot, &info))
    }

    private func check(_ function: String, _ rv: CK_RV) throws {
        guard rv == CKR_OK else { throw PKCS11Error.call(function, rv) }
    }
}

extension String {
    fileprivate func trimmingTrailing(_ character: Character) -> String {
        var text = self
        while text.last == character || text.last == "\0" { text.removeLast() }
        return text
    }
}
