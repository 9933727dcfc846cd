import Foundation
import SignetKubernetes

/// The status of a `certificates.signet.dev` object, typed; the wire names are cert-manager's. Read from the
/// object's JSON and written back over it, so fields another writer added are kept.
struct CertificateStatus: Sendable, Equatable {
    var conditions: [Condition] = []
    var serial: String?
    var notBefore: Date?
    var notAfter: Date?
    var renewalTime: Date?
    /// Incremented with each issuance, as cert-manager's.
    var revision: Int?
    var failedIssuanceAttempts: Int?
    var lastFailureTime: Date?
    /// The Secret holding the key of the issuance in progress.
    var nextPrivateKeySecretName: String?

    init() {}

    init(_ json: JSONValue?) {
        conditions = Conditions.read(json)
        serial = json?["serial"]?.string
        notBefore = Conditions.date(json?["notBefore"]?.string)
        notAfter = Conditions.date(json?["notAfter"]?.string)
        renewalTime = Conditions.date(json?["renewalTime"]?.string)
        revision = json?["revision"]?.number.map { Int($0) }
        failedIssuanceAttempts = json?["failedIssuanceAttempts"]?.number.map { Int($0) }
        lastFailureTime = Conditions.date(json?["lastFailureTime"]?.string)
        nextPrivateKeySecretName = json?["nextPrivateKeySecretName"]?.string
    }

    /// Writes every field this type knows over `json`, removing those it holds as nil.
    func write(into json: inout JSONValue) {
        if case .object = json {} else { json = .object([:]) }
        json["conditions"] = conditions.isEmpty ? nil : .array(conditions.map(\.json))
        json["serial"] = serial.map(JSONValue.string)
        json["notBefore"] = notBefore.map { .string(Conditions.timestamp($0)) }
        json["notAfter"] = notAfter.map { .string(Conditions.timestamp($0)) }
        json["renewalTime"] = renewalTime.map { .string(Conditions.timestamp($0)) }
        json["revision"] = revision.map { .number(Double($0)) }
        json["failedIssuanceAttempts"] = failedIssuanceAttempts.map { .number(Double($0)) }
        json["lastFailureTime"] = lastFailureTime.map { .string(Conditions.timestamp($0)) }
        json["nextPrivateKeySecretName"] = nextPrivateKeySecretName.map(JSONValue.string)
    }

    func condition(_ type: String) -> Condition? { conditions.first { $0.type == type } }

    mutating func set(
        _ type: String, _ value: Bool, reason: String, message: String, generation: Int, now: Date
    ) {
        Conditions.set(
            &conditions, type: type, status: value ? "True" : "False", reason: reason, message: message,
            generation: generation, now: now)
    }

    /// The certificate the Secret holds.
    mutating func hold(_ held: HeldCertificate) {
        serial = held.serial
        notBefore = held.notBefore
        notAfter = held.notAfter
        renewalTime = held.renewalTime
    }

    /// What decisions need of it.
    var issuanceRecord: IssuanceRecord {
        IssuanceRecord(failedAttempts: failedIssuanceAttempts ?? 0, lastFailure: lastFailureTime)
    }
}
