import Foundation
import Logging
import SignetAuthority
import SignetDelivery
import SignetKubernetes

/// Istio Gateways annotated `signet.dev/issue: "true"` get a Certificate per `tls.credentialName`, covering the hosts
/// of the servers that name it, in each namespace the gateway workload runs in: Istio resolves a credentialName in
/// the namespace of the gateway pods, not of the Gateway resource. Those namespaces are found from the Gateway's
/// selector (pods matching it); `signet.dev/secret-namespace` names one explicitly; with no matching pods the
/// Gateway's own namespace is used and a Warning says so.
///
/// Whoever may create a Gateway in a namespace controls its selector and annotations, so neither may reach another
/// tenant: Certificates go only into the Gateway's own namespace, or into namespaces an administrator allowed for
/// Gateways of that namespace (`GatewayNamespaces`); anything else is refused with a Warning naming the rule. The
/// Certificates the shim makes never adopt a Secret Signet did not write. Removing the annotation, or the Gateway,
/// removes those Certificates; their Secrets stay, so traffic is never cut by taking Signet away.
public enum GatewayShim {
    public static let issueAnnotation = "signet.dev/issue"
    public static let secretNamespaceAnnotation = "signet.dev/secret-namespace"
    /// On the Certificates the shim makes: `<namespace>.<name>` of their Gateway.
    public static let gatewayLabel = "signet.dev/gateway"

    /// Where Gateways of a namespace may have Certificates made besides their own namespace: the administrator's
    /// allowance, e.g. `default=istio-system` for Istio's task (the Gateway in `default`, the ingress pods in
    /// `istio-system`). Nothing a tenant writes extends it.
    public struct GatewayNamespaces: Sendable, Equatable {
        public var allowed: [String: Set<String>]

        public init(_ allowed: [String: Set<String>] = [:]) {
            self.allowed = allowed
        }

        /// `SOURCE=TARGET[,TARGET...]` entries, as given on the command line.
        public init(parsing entries: [String]) throws(GatewayNamespacesError) {
            var allowed: [String: Set<String>] = [:]
            for entry in entries {
                let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
                let targets = parts.count == 2 ? parts[1].split(separator: ",").map(String.init) : []
                guard parts.count == 2, KubernetesNames.isLabel(parts[0]), !targets.isEmpty,
                    targets.allSatisfy(KubernetesNames.isLabel)
                else {
                    throw GatewayNamespacesError(entry: entry)
                }
                allowed[parts[0], default: []].formUnion(targets)
            }
            self.allowed = allowed
        }

        public func permits(gatewayNamespace: String, certificateNamespace: String) -> Bool {
            certificateNamespace == gatewayNamespace
                || allowed[gatewayNamespace]?.contains(certificateNamespace) == true
        }

        /// The rule, for Warning Events.
        func rule(for gatewayNamespace: String) -> String {
            let extra = (allowed[gatewayNamespace] ?? []).sorted()
            return extra.isEmpty
                ? "Gateways in \(gatewayNamespace) get Certificates only in \(gatewayNamespace) (an administrator may allow more with --gateway-namespaces \(gatewayNamespace)=NAMESPACE)"
                : "Gateways in \(gatewayNamespace) get Certificates only in \(([gatewayNamespace] + extra).joined(separator: ", ")) (--gateway-namespaces)"
        }
    }

    public struct GatewayNamespacesError: Error, CustomStringConvertible {
        public let entry: String
        public var description: String {
            "--gateway-namespaces '\(entry)' must be GATEWAY-NAMESPACE=NAMESPACE[,NAMESPACE...] of namespace names"
        }
    }

    /// A Warning the shim raises on the Gateway.
    public struct Refusal: Equatable, Sendable {
        public var reason: String
        public var note: String
    }

    public struct DesiredCertificate: Equatable, Sendable {
        public var namespace: String
        public var name: String
        public var dnsNames: [String]
        public var mutual: Bool
    }

    /// The label selector of the Gateway's workload (`spec.selector`), as a query string.
    public static func workloadSelector(_ gateway: KubernetesObject) -> String? {
        let selector = gateway.json["spec"]?["selector"]?.stringMap ?? [:]
        guard !selector.isEmpty else { return nil }
        return selector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }

    /// The Certificates a Gateway asks for, in each of `workloadNamespaces` that `allowance` permits, and what could
    /// not be honoured (for Warning Events).
    public static func desired(
        _ gateway: KubernetesObject, workloadNamespaces: [String], allowance: GatewayNamespaces
    ) -> (certificates: [DesiredCertificate], refusals: [Refusal]) {
        guard gateway.annotations[issueAnnotation] == "true" else { return ([], []) }
        let home = gateway.namespace ?? "default"
        var all: [DesiredCertificate] = []
        var refusals: [Refusal] = []
        let named = gateway.annotations[secretNamespaceAnnotation]
        let namespaces = named.map { [$0] } ?? (workloadNamespaces.isEmpty ? [home] : workloadNamespaces)
        for namespace in namespaces {
            guard allowance.permits(gatewayNamespace: home, certificateNamespace: namespace) else {
                // The Event is read by the Gateway's author: a namespace found through pods is not theirs to learn.
                let place = named != nil ? "namespace \(namespace)" : "a namespace where pods matching the selector run"
                let refusal = Refusal(
                    reason: "NamespaceNotAllowed", note: "no Certificate in \(place): \(allowance.rule(for: home))")
                if !refusals.contains(refusal) { refusals.append(refusal) }
                continue
            }
            let (certificates, refused) = desired(gateway, in: namespace)
            all += certificates
            refusals += refused.filter { !refusals.contains($0) }
        }
        return (all, refusals)
    }

    private static func desired(_ gateway: KubernetesObject, in namespace: String) -> (
        certificates: [DesiredCertificate], refusals: [Refusal]
    ) {
        var byCredential: [String: DesiredCertificate] = [:]
        var order: [String] = []
        var refusals: [Refusal] = []
        guard case .array(let servers)? = gateway.json["spec"]?["servers"] else { return ([], []) }
        for server in servers {
            guard let tls = server["tls"], let credential = tls["credentialName"]?.string, !credential.isEmpty else {
                continue
            }
            let mode = tls["mode"]?.string ?? "SIMPLE"
            guard ["SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"].contains(mode) else { continue }
            guard KubernetesNames.isSubdomain(credential) else {
                refusals.append(
                    Refusal(reason: "HostRefused", note: "credentialName '\(credential)' is not a valid Secret name"))
                continue
            }
            var hosts: [String] = []
            if case .array(let listed)? = server["hosts"] {
                for host in listed.compactMap(\.string) {
                    // "namespace/host" scopes the host to VirtualServices of a namespace; the certificate wants the host.
                    let bare = host.split(separator: "/", maxSplits: 1).last.map(String.init) ?? host
                    guard bare != "*" else {
                        refusals.append(
                            Refusal(
                                reason: "HostRefused",
                                note:
                                    "server with credentialName '\(credential)': host '\(host)' matches every name, and no certificate can; list the hosts"
                            ))
                        continue
                    }
                    if !hosts.contains(bare.lowercased()) { hosts.append(bare.lowercased()) }
                }
            }
            guard !hosts.isEmpty else { continue }
            if var existing = byCredential[credential] {
                existing.dnsNames += hosts.filter { !existing.dnsNames.contains($0) }
                existing.mutual = existing.mutual || mode != "SIMPLE"
                byCredential[credential] = existing
            } else {
                byCredential[credential] = DesiredCertificate(
                    namespace: namespace, name: credential, dnsNames: hosts, mutual: mode != "SIMPLE")
                order.append(credential)
            }
        }
        return (order.compactMap { byCredential[$0] }, refusals)
    }

    /// The Certificate object for a desired one. MUTUAL servers need `ca.crt`, which every Signet Secret carries, and
    /// `ca.crl`, so that a revoked client certificate is refused: asked for with `caCRL`.
    static func object(_ desired: DesiredCertificate, gateway: KubernetesObject, issuerName: String) -> KubernetesObject
    {
        var spec: [String: JSONValue] = [
            "secretName": .string(desired.name),
            "dnsNames": .array(desired.dnsNames.map(JSONValue.string)),
            "issuerRef": .object(["name": .string(issuerName)]),
        ]
        if desired.mutual { spec["caCRL"] = .bool(true) }
        return KubernetesObject(
            .object([
                "apiVersion": .string(ResourceKind.certificates.apiVersion), "kind": .string("Certificate"),
                "metadata": .object([
                    "name": .string(desired.name), "namespace": .string(desired.namespace),
                    "labels": .object([
                        gatewayLabel: .string(label(of: gateway)),
                        TLSSecret.managedByLabel: .string(TLSSecret.managedByValue),
                    ]),
                    "annotations": .object(["signet.dev/gateway-mode": .string(desired.mutual ? "MUTUAL" : "SIMPLE")]),
                ]),
                "spec": .object(spec),
            ]))
    }

    static func label(of gateway: KubernetesObject) -> String {
        String("\(gateway.namespace ?? "default").\(gateway.name)".prefix(63))
    }
}

extension CertificateController {
    /// Watches Gateways and keeps the shim's Certificates in step with them.
    func followGateways() async {
        await client.follow(.gateways, namespace: settings.namespace) { observed in
            switch observed {
            case .listed(let gateways):
                for gateway in gateways { await self.syncGateway(gateway, deleted: false) }
                try await self.removeOrphans(keeping: Set(gateways.map(GatewayShim.label(of:))))
            case .changed(let gateway):
                await self.syncGateway(gateway, deleted: false)
            case .deleted(let gateway):
                await self.syncGateway(gateway, deleted: true)
            }
        }
    }

    /// Certificates made for Gateways that no longer exist (deleted while no controller was watching).
    private func removeOrphans(keeping labels: Set<String>) async throws {
        let made = try await client.list(.certificates, namespace: nil, labelSelector: GatewayShim.gatewayLabel).items
        for certificate in made where !labels.contains(certificate.labels[GatewayShim.gatewayLabel] ?? "") {
            // With --namespace, Gateways elsewhere are not seen; their Certificates are not this replica's to judge.
            if let namespace = settings.namespace,
                !(certificate.labels[GatewayShim.gatewayLabel] ?? "").hasPrefix(namespace + ".")
            {
                continue
            }
            try await client.delete(.certificates, namespace: certificate.namespace, name: certificate.name)
            logger.info(
                "removed a Certificate of a Gateway that is gone",
                metadata: ["certificate": "\(certificate.namespace ?? "")/\(certificate.name)"])
        }
    }

    /// Creates, updates and deletes the Certificates of one Gateway so that they are exactly the desired ones.
    func syncGateway(_ gateway: KubernetesObject, deleted: Bool) async {
        let label = GatewayShim.label(of: gateway)
        do {
            var workloads: [String] = []
            if !deleted, gateway.annotations[GatewayShim.issueAnnotation] == "true",
                gateway.annotations[GatewayShim.secretNamespaceAnnotation] == nil,
                let selector = GatewayShim.workloadSelector(gateway)
            {
                let pods = try await client.list(.pods, namespace: nil, labelSelector: selector).items
                workloads = Array(Set(pods.compactMap(\.namespace))).sorted()
                if workloads.isEmpty {
                    await announceGateway(
                        gateway, type: "Warning", reason: "NoWorkload",
                        note:
                            "no pods match the selector \(selector); Certificates go to the Gateway's namespace \(gateway.namespace ?? "")"
                    )
                }
            }
            let (desired, refusals) =
                deleted
                ? ([], [])
                : GatewayShim.desired(gateway, workloadNamespaces: workloads, allowance: settings.gatewayNamespaces)
            // Wherever they were made (the secret namespace may have changed since), the Gateway's Certificates carry its
            // label; a label is text a tenant can imitate, so only those in this Gateway's own namespace or one
            // allowed for it are its own.
            let home = gateway.namespace ?? "default"
            let owned = try await client.list(
                .certificates, namespace: nil, labelSelector: "\(GatewayShim.gatewayLabel)=\(label)"
            ).items
                .filter {
                    settings.gatewayNamespaces.permits(gatewayNamespace: home, certificateNamespace: $0.namespace ?? "")
                }
            logger.debug(
                "syncing a Gateway",
                metadata: ["gateway": "\(label)", "wanted": "\(desired.count)", "existing": "\(owned.count)"])
            for certificate in desired {
                let wanted = GatewayShim.object(certificate, gateway: gateway, issuerName: settings.issuerName)
                if var existing = owned.first(where: {
                    $0.name == certificate.name && $0.namespace == certificate.namespace
                }) {
                    guard existing.json["spec"] != wanted.json["spec"] else { continue }
                    existing.json["spec"] = wanted.json["spec"]
                    _ = try await client.replace(.certificates, existing)
                } else if let clash = try await client.get(
                    .certificates, namespace: certificate.namespace, name: certificate.name)
                {
                    await announceGateway(
                        gateway, type: "Warning", reason: "CertificateExists",
                        note:
                            "Certificate \(certificate.namespace)/\(certificate.name) exists and was not made for this Gateway; left alone (\(clash.labels[GatewayShim.gatewayLabel] ?? "no gateway label"))"
                    )
                } else {
                    _ = try await client.create(.certificates, wanted)
                    await announceGateway(
                        gateway, type: "Normal", reason: "CertificateCreated",
                        note:
                            "Certificate \(certificate.namespace)/\(certificate.name) for \(certificate.dnsNames.joined(separator: ", "))"
                    )
                }
            }
            for stale in owned
            where !desired.contains(where: { $0.name == stale.name && $0.namespace == stale.namespace }) {
                try await client.delete(.certificates, namespace: stale.namespace, name: stale.name)
                if !deleted {
                    await announceGateway(
                        gateway, type: "Normal", reason: "CertificateRemoved",
                        note:
                            "Certificate \(stale.namespace ?? "")/\(stale.name) is no longer asked for; its Secret stays"
                    )
                }
            }
            for refusal in refusals {
                await announceGateway(gateway, type: "Warning", reason: refusal.reason, note: refusal.note)
            }
        } catch {
            logger.warning(
                "cannot sync a Gateway's Certificates", metadata: ["gateway": "\(label)", "error": "\(error)"])
        }
    }

    private func announceGateway(_ gateway: KubernetesObject, type: String, reason: String, note: String) async {
        try? await client.recordEvent(
            regarding: gateway, type: type, reason: reason, action: "Sync", note: note,
            controller: "signet.dev/controller")
    }
}
