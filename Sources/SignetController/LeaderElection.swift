import Foundation
import Logging
import SignetKubernetes

/// Leader election with a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it: the holder renews
/// every few seconds; another replica takes over only once a whole lease duration has passed without a renewal; and
/// a holder that cannot renew stops working before that moment, so two replicas never act at once.
public struct LeaderElection: Sendable {
    let client: KubernetesClient
    let namespace: String
    let name: String
    let identity: String
    let leaseDuration: Duration
    let renewInterval: Duration
    let logger: Logger

    public init(
        client: KubernetesClient, namespace: String, name: String, identity: String,
        leaseDuration: Duration = .seconds(15), renewInterval: Duration = .seconds(5), logger: Logger
    ) {
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.leaseDuration = leaseDuration
        self.renewInterval = renewInterval
        self.logger = logger
    }

    /// Runs `lead` whenever this replica holds the lease, cancelling it when the lease is lost; until cancelled.
    public func run(_ lead: @escaping @Sendable () async -> Void) async {
        while !Task.isCancelled {
            guard await attempt() else {
                try? await Task.sleep(for: renewInterval * Double.random(in: 0.8...1.2))
                continue
            }
            logger.info("leading", metadata: ["lease": "\(namespace)/\(name)", "identity": "\(identity)"])
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await lead() }
                group.addTask {
                    var renewed = ContinuousClock.now
                    // Give up two seconds before another replica may take over.
                    let deadline = leaseDuration - .seconds(2)
                    while !Task.isCancelled {
                        try? await Task.sleep(for: renewInterval)
                        if await attempt() {
                            renewed = ContinuousClock.now
                        } else if ContinuousClock.now - renewed > deadline {
                            return
                        }
                    }
                }
                await group.next()
                group.cancelAll()
            }
            if !Task.isCancelled {
                logger.warning("lost the lease; stopped working", metadata: ["lease": "\(namespace)/\(name)"])
            }
        }
    }

    /// Takes or renews the lease; false when another replica holds an unexpired one or won a race for it.
    func attempt() async -> Bool {
        let now = Date()
        let stamp = Self.microTime(now)
        do {
            guard var lease = try await client.get(.leases, namespace: namespace, name: name) else {
                let fresh = KubernetesObject(
                    .object([
                        "apiVersion": .string("coordination.k8s.io/v1"), "kind": .string("Lease"),
                        "metadata": .object(["name": .string(name), "namespace": .string(namespace)]),
                        "spec": .object([
                            "holderIdentity": .string(identity),
                            "leaseDurationSeconds": .number(Double(leaseDuration.components.seconds)),
                            "acquireTime": .string(stamp), "renewTime": .string(stamp), "leaseTransitions": .number(0),
                        ]),
                    ]))
                _ = try await client.create(.leases, fresh)
                return true
            }
            let spec = lease.json["spec"] ?? .object([:])
            let holder = spec["holderIdentity"]?.string
            if let holder, holder != identity, !holder.isEmpty {
                let renewed = spec["renewTime"]?.string.flatMap(Self.parse) ?? .distantPast
                let duration = spec["leaseDurationSeconds"]?.number ?? 15
                if now < renewed.addingTimeInterval(duration) { return false }
                logger.info("taking over an expired lease", metadata: ["from": "\(holder)"])
            }
            var updated = spec
            updated["holderIdentity"] = .string(identity)
            updated["leaseDurationSeconds"] = .number(Double(leaseDuration.components.seconds))
            updated["renewTime"] = .string(stamp)
            if holder != identity {
                updated["acquireTime"] = .string(stamp)
                updated["leaseTransitions"] = .number((spec["leaseTransitions"]?.number ?? 0) + 1)
            }
            lease.json["spec"] = updated
            _ = try await client.replace(.leases, lease)
            return true
        } catch {
            if (error as? KubernetesError)?.code != 409 {
                logger.warning(
                    "lease request failed", metadata: ["lease": "\(namespace)/\(name)", "error": "\(error)"])
            }
            return false
        }
    }

    /// Kubernetes MicroTime: RFC 3339 with microseconds.
    static func microTime(_ date: Date) -> String {
        let seconds = Int64(date.timeIntervalSince1970)
        let micros = Int((date.timeIntervalSince1970 - Double(seconds)) * 1_000_000)
        let base = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(seconds)))
        return base.replacingOccurrences(of: "Z", with: String(format: ".%06dZ", micros))
    }

    static func parse(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }
}
