import Logging

import Foundation

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
    public func follow(
        _ kind: ResourceKind, namespace: String?, labelSelector: String? = nil, _ handle: @escaping @Sendable (Observed) async throws -> Void
    ) async {
        var failures = 0
        while !Task.isCancelled {
            do {
                let (items, listed) = try await list(kind, namespace: namespace, labelSelector: labelSelector)
                try await handle(.listed(items))
                failures = 0
                var version = listed
                relist: while !Task.isCancelled {
                    for try await event in watch(kind, namespace: namespace, labelSelector: labelSelector, resourceVersion: version) {
                        switch event {
                        case .added(let object), .modified(let object):
                            version = object.resourceVersion ?? version
                            try await handle(.changed(object))
                        case .deleted(let object):
                            version = object.resourceVersion ?? version
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
                logger.warning("watch failed; relisting", metadata: [
                    "kind": "\(kind.plural)", "namespace": "\(namespace ?? "*")", "error": "\(error)", "retryIn": "\(Int(delay)) s",
                ])
                try? await Task.sleep(for: .seconds(delay))
            }
        }
    }
}
