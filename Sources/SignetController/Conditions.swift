import Foundation
import SignetKubernetes

/// One status condition, cert-manager style.
struct Condition: Sendable, Equatable {
    var type: String
    var status: String
    var reason: String
    var message: String
    var lastTransitionTime: String
    /// nil for kinds whose conditions carry none (cert-manager's CertificateRequest, Kubernetes' CSR).
    var observedGeneration: Int?
    /// Kubernetes' CSR conditions carry it; nil elsewhere.
    var lastUpdateTime: String?

    init?(_ json: JSONValue) {
        guard let type = json["type"]?.string else { return nil }
        self.type = type
        status = json["status"]?.string ?? "Unknown"
        reason = json["reason"]?.string ?? ""
        message = json["message"]?.string ?? ""
        lastTransitionTime = json["lastTransitionTime"]?.string ?? ""
        observedGeneration = json["observedGeneration"]?.number.map { Int($0) }
        lastUpdateTime = json["lastUpdateTime"]?.string
    }

    init(type: String, status: String, reason: String, message: String, lastTransitionTime: String) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.lastTransitionTime = lastTransitionTime
    }

    var json: JSONValue {
        var object: JSONValue = .object([
            "type": .string(type), "status": .string(status), "reason": .string(reason), "message": .string(message),
            "lastTransitionTime": .string(lastTransitionTime),
        ])
        if let observedGeneration { object["observedGeneration"] = .number(Double(observedGeneration)) }
        if let lastUpdateTime { object["lastUpdateTime"] = .string(lastUpdateTime) }
        return object
    }
}

/// The conditions list of a status: one entry per type, its transition time moving only when its status flips.
enum Conditions {
    static func get(_ status: JSONValue, _ type: String) -> JSONValue? {
        read(status).first { $0.type == type }?.json
    }

    static func read(_ status: JSONValue?) -> [Condition] {
        guard case .array(let items)? = status?["conditions"] else { return [] }
        return items.compactMap(Condition.init)
    }

    /// Sets condition `type` in a list. `generation` is its observedGeneration; nil for kinds whose conditions carry
    /// none. `updateTime` records `lastUpdateTime` too (Kubernetes' CSR conditions).
    static func set(
        _ conditions: inout [Condition], type: String, status value: String, reason: String, message: String,
        generation: Int?, now: Date, updateTime: Bool = false
    ) {
        let index = conditions.firstIndex { $0.type == type }
        let previous = index.map { conditions[$0] }
        let at = timestamp(now)
        var condition = Condition(
            type: type, status: value, reason: reason, message: String(message.prefix(1024)),
            lastTransitionTime: previous?.status == value ? (previous?.lastTransitionTime ?? at) : at)
        condition.observedGeneration = generation
        if updateTime { condition.lastUpdateTime = at }
        if let index { conditions[index] = condition } else { conditions.append(condition) }
    }

    /// The same, on a raw status (the kinds whose status Signet writes only in part).
    static func set(
        _ status: inout JSONValue, type: String, status value: String, reason: String, message: String,
        generation: Int?, now: Date, updateTime: Bool = false
    ) {
        var conditions = read(status)
        set(
            &conditions, type: type, status: value, reason: reason, message: message, generation: generation, now: now,
            updateTime: updateTime)
        status["conditions"] = .array(conditions.map(\.json))
    }

    static func timestamp(_ date: Date) -> String {
        ISO8601DateFormatter().string(from: date)
    }

    static func date(_ text: String?) -> Date? {
        text.flatMap { ISO8601DateFormatter().date(from: $0) }
    }
}
