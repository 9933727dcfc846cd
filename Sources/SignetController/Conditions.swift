import Foundation
import SignetKubernetes

/// The conditions list of a status, cert-manager style: one entry per type, its time moving only when it flips.
enum Conditions {
    static func get(_ status: JSONValue, _ type: String) -> JSONValue? {
        guard case .array(let items)? = status["conditions"] else { return nil }
        return items.first { $0["type"]?.string == type }
    }

    /// Sets condition `type`. `generation` is its observedGeneration; nil for kinds whose conditions carry none
    /// (cert-manager's CertificateRequest, Kubernetes' CSR, which has lastUpdateTime instead).
    static func set(
        _ status: inout JSONValue, type: String, status value: String, reason: String, message: String,
        generation: Int?,
        now: Date
    ) {
        var items: [JSONValue] = []
        if case .array(let existing)? = status["conditions"] { items = existing }
        let index = items.firstIndex { $0["type"]?.string == type }
        let previous = index.map { items[$0] }
        let changed = previous?["status"]?.string != value
        var condition: JSONValue = .object([
            "type": .string(type), "status": .string(value), "reason": .string(reason),
            "message": .string(String(message.prefix(1024))),
            "lastTransitionTime": changed
                ? .string(timestamp(now)) : (previous?["lastTransitionTime"] ?? .string(timestamp(now))),
        ])
        if let generation { condition["observedGeneration"] = .number(Double(generation)) }
        if let index { items[index] = condition } else { items.append(condition) }
        status["conditions"] = .array(items)
    }

    static func timestamp(_ date: Date) -> String {
        ISO8601DateFormatter().string(from: date)
    }
}
