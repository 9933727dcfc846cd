import Foundation
import Logging

extension KubernetesClient {
    /// What `follow` reports: the whole list after each (re)list, then changes one by one.
    public enum Observed: Sendable {
        case listed([KubernetesObject])
        case changed(KubernetesObject)
        case deleted(KubernetesObject)
    }

    /// An informer's loop, as client-go's reflector runs it: list, then watch from the list's resourceVersion;
    /// a watch that ends is resumed from the last version seen (bookmarks keep it fresh); `410 Expired` relists;
    /// errors (of the API server or of `handle`) relist after a capped, jittered backoff. Runs until cancelled.
    /// Objects deleted while no watch was open are reported as deleted at the relist that no longer finds them
    /// (client-go's Replace does the same), so no deletion is lost in a watch gap.
    public func follow(
        _ kind: ResourceKind, namespace: String?, labelSelector: String? = nil,
        _ handle: @escaping @Sendable (Observed) async throws -> Void
    ) async {
        var failures = 0
        var known: [String: KubernetesObject] = [:]
        func key(_ object: KubernetesObject) -> String { "\(object.namespace ?? "")/\(object.name)" }
        while !Task.isCancelled {
            do {
                let (items, listed) = try await list(kind, namespace: namespace, labelSelector: labelSelector)
                logger.debug(
                    "listed",
                    metadata: ["kind": "\(kind.plural)", "items": "\(items.count)", "resourceVersion": "\(listed)"])
                let present = Dictionary(items.map { (key($0), $0) }, uniquingKeysWith: { first, _ in first })
                for (name, gone) in known where present[name] == nil {
                    try await handle(.deleted(gone))
                }
                known = present
                try await handle(.listed(items))
                failures = 0
                var version = listed
                relist: while !Task.isCancelled {
                    logger.debug("watching", metadata: ["kind": "\(kind.plural)", "resourceVersion": "\(version)"])
                    for try await event in watch(
                        kind, namespace: namespace, labelSelector: labelSelector, resourceVersion: version)
                    {
                        switch event {
                        case .added(let object), .modified(let object):
                            version = object.resourceVersion ?? version
                            known[key(object)] = object
                            try await handle(.changed(object))
                        case .deleted(let object):
                            version = object.resourceVersion ?? version
                            known[key(object)] = nil
                            try await handle(.deleted(object))
                        case .bookmark(let resourceVersion):
                            version = resourceVersion
                        case .expired:
                            break relist
                        }
                    }
                }
            } catch {
                failures += 1
                let delay = min(Double(1 << min(failures, 6)), 60) * Double.random(in: 0.5...1)
                logger.warning(
                    "watch failed; relisting",
                    metadata: [
                        "kind": "\(kind.plural)", "namespace": "\(namespace ?? "*")", "error": "\(error)",
                        "retryIn": "\(Int(delay)) s",
                    ])
                try? await Task.sleep(for: .seconds(delay))
            }
        }
    }
}
