/// A namespaced object's identity in a work queue (`namespace/name`), as client-go's `cache.MetaNamespaceKeyFunc`
/// makes it: every controller here queues these.
struct ObjectKey: Hashable, Sendable, CustomStringConvertible {
    let namespace: String
    let name: String
    var description: String { "\(namespace)/\(name)" }
}
