import Foundation
import SignetAuthority
import SignetKeys
import SignetKubernetes
import SignetManaged
import SwiftASN1
import X509

/// What goes into a `kubernetes.io/tls` Secret for an Istio gateway's `credentialName`.
public struct TLSSecretContents: Sendable {
    /// The leaf, then the intermediates (never the root): `tls.crt`.
    public var chain: [Certificate]
    /// PKCS#8 PEM: `tls.key`.
    public var privateKeyPEM: String
    /// `ca.crt`: what a MUTUAL gateway verifies clients with, and what clients of the gateway trust.
    public var root: Certificate
    /// Who issued it, for the `signet.dev/issuer` annotation (the CA's subject).
    public var issuer: String
    public var renewAfter: Date
    /// The user's own labels and annotations for the Secret (a secretTemplate).
    public var templateLabels: [String: String] = [:]
    public var templateAnnotations: [String: String] = [:]
    /// Optional outputs by Secret key (`TLSSecret.optionalOutputKeys`), made by `addOutputs`.
    public var outputs: [String: [UInt8]] = [:]
    /// Who keeps this Secret fresh (`TLSSecret.ownerAnnotation`): `managed/NAME` or `certificate/NAMESPACE/NAME`; nil
    /// for a one-off write from the CLI, which claims nothing.
    public var owner: String?

    public init(chain: [Certificate], privateKeyPEM: String, root: Certificate, issuer: String, renewAfter: Date) {
        self.chain = chain
        self.privateKeyPEM = privateKeyPEM
        self.root = root
        self.issuer = issuer
        self.renewAfter = renewAfter
    }
}

extension TLSSecretContents {
    /// cert-manager's extra outputs: `tls-combined.pem` (key, then chain), `key.der` (PKCS#8 DER), and with a
    /// password, `keystore.p12` (key and chain) and `truststore.p12` (the root).
    public mutating func addOutputs(_ formats: [OutputFormat], pkcs12Password: String?) throws {
        let chainPEM = try PEMFiles.pem(chain)
        let keyDER = try PEMDocument(pemString: privateKeyPEM).derBytes
        for format in formats {
            switch format {
            case .combinedPEM: outputs["tls-combined.pem"] = Array((privateKeyPEM + chainPEM).utf8)
            case .der: outputs["key.der"] = keyDER
            }
        }
        if let password = pkcs12Password {
            outputs["keystore.p12"] = try PKCS12.keystore(privateKeyInfo: keyDER, chain: chain, password: password)
            outputs["truststore.p12"] = try PKCS12.truststore([root], password: password)
        }
    }
}

public enum SecretRefusal: Error, Equatable, CustomStringConvertible {
    /// The Secret exists with another type; a Secret's type is immutable and Signet never changes it.
    case wrongType(namespace: String, name: String, type: String)
    /// The Secret exists and Signet did not write it; it is only taken over when asked to adopt it.
    case notManaged(namespace: String, name: String)
    /// Another Signet owner (a managed certificate, a controller Certificate) keeps this Secret; two owners would
    /// replace each other's certificate without end, so the second is refused whatever it asks (adopt included).
    case ownedElsewhere(namespace: String, name: String, owner: String)
    /// The contents fail their own checks; a broken Secret is never written.
    case brokenContents(String)

    public var description: String {
        switch self {
        case let .wrongType(namespace, name, type):
            "Secret \(namespace)/\(name) has type \(type), not kubernetes.io/tls; Signet does not change a Secret's type (delete it, or pick another name)"
        case let .notManaged(namespace, name):
            "Secret \(namespace)/\(name) exists and is not managed by Signet; adopt it explicitly to let Signet overwrite its certificate"
        case let .ownedElsewhere(namespace, name, owner):
            "Secret \(namespace)/\(name) is kept by \(owner) (annotation \(TLSSecret.ownerAnnotation)); one Secret has one owner: delete that owner or pick another Secret name"
        case .brokenContents(let what):
            "refusing to write a broken Secret: \(what)"
        }
    }
}

/// The pure part of delivery: checks the contents, and computes the Secret to write given the one that exists.
public enum TLSSecret {
    public static let managedByLabel = "app.kubernetes.io/managed-by"
    public static let managedByValue = "signet"
    public static let serialAnnotation = "signet.dev/serial"
    public static let notAfterAnnotation = "signet.dev/not-after"
    public static let renewAfterAnnotation = "signet.dev/renew-after"
    public static let issuerAnnotation = "signet.dev/issuer"
    /// The one owner that keeps the Secret fresh, written with every write and checked before every write.
    public static let ownerAnnotation = "signet.dev/owner"
    /// Istio reads these generic keys in preference to tls.crt/tls.key/ca.crt; left behind, they would shadow every
    /// renewal, so Signet removes them from a Secret it writes.
    public static let shadowingKeys = ["cert", "key", "cacert"]
    /// Keys Signet writes only when asked; removed when no longer asked for, so they never go stale.
    public static let optionalOutputKeys = ["tls-combined.pem", "key.der", "keystore.p12", "truststore.p12", crlKey]
    /// The CRLs of the chain (PEM), where Istio (1.18+) reads them to check client certificates of a MUTUAL server.
    public static let crlKey = "ca.crl"

    /// The key matches the leaf, each certificate is signed by the next (the last by the root), and the leaf is
    /// currently valid.
    public static func verify(_ contents: TLSSecretContents, now: Date = Date()) throws(SecretRefusal) {
        guard let leaf = contents.chain.first else { throw .brokenContents("no certificate") }
        let key: Certificate.PrivateKey
        do {
            key = try PrivateKeyPEM.read(contents.privateKeyPEM)
        } catch {
            throw .brokenContents("the private key cannot be read (\(error))")
        }
        guard key.publicKey == leaf.publicKey else {
            throw .brokenContents("the private key does not match the certificate")
        }
        for (index, certificate) in contents.chain.enumerated() {
            let issuer = index + 1 < contents.chain.count ? contents.chain[index + 1] : contents.root
            guard certificate.issuer == issuer.subject,
                issuer.publicKey.isValidSignature(certificate.signature, for: certificate)
            else {
                throw .brokenContents(
                    "certificate \(index) of tls.crt (\(certificate.subject)) is not signed by \(issuer.subject)")
            }
        }
        guard leaf.notValidBefore <= now.addingTimeInterval(300), now < leaf.notValidAfter else {
            throw .brokenContents(
                "the certificate is not currently valid (\(leaf.notValidBefore) – \(leaf.notValidAfter))")
        }
    }

    /// Why `owner` may not write over `existing`, or nil if it may: a Secret of another type is never changed; one
    /// that another Signet owner keeps is never taken (adopt does not reach it); one that Signet did not write is taken
    /// only when adopting. A Signet Secret from before owners were recorded (no owner annotation) is taken by the first
    /// owner that writes it, which stamps its name.
    public static func refusal(toWrite existing: KubernetesObject, owner: String?, adopt: Bool) -> SecretRefusal? {
        let namespace = existing.namespace ?? "", name = existing.name
        let type = existing.type ?? "Opaque"
        guard type == "kubernetes.io/tls" else { return .wrongType(namespace: namespace, name: name, type: type) }
        if let holder = existing.annotations[ownerAnnotation], holder != owner {
            return .ownedElsewhere(namespace: namespace, name: name, owner: holder)
        }
        guard adopt || existing.labels[managedByLabel] == managedByValue else {
            return .notManaged(namespace: namespace, name: name)
        }
        return nil
    }

    /// The Secret to create (when `existing` is nil) or to replace it with: tls.crt, tls.key, ca.crt and the
    /// annotations replaced; the existing object's other keys, labels, annotations and fields kept.
    public static func desired(
        existing: KubernetesObject?, namespace: String, name: String, contents: TLSSecretContents, adopt: Bool
    ) throws(SecretRefusal) -> KubernetesObject {
        try verify(contents)
        var secret =
            existing
            ?? KubernetesObject(
                .object([
                    "apiVersion": .string("v1"), "kind": .string("Secret"), "type": .string("kubernetes.io/tls"),
                    "metadata": .object(["name": .string(name), "namespace": .string(namespace)]),
                ]))
        if let existing, let refusal = refusal(toWrite: existing, owner: contents.owner, adopt: adopt) { throw refusal }
        let leaf = contents.chain[0]
        let pem: (([Certificate]) -> String) = { certificates in (try? PEMFiles.pem(certificates)) ?? "" }
        var data = secret.data
        for key in shadowingKeys + optionalOutputKeys { data[key] = nil }
        data.merge(contents.outputs) { $1 }
        data["tls.crt"] = Array(pem(contents.chain).utf8)
        data["tls.key"] = Array(contents.privateKeyPEM.utf8)
        data["ca.crt"] = Array(pem([contents.root]).utf8)
        secret.data = data
        secret.labels = secret.labels.merging(contents.templateLabels) { $1 }.merging([managedByLabel: managedByValue])
        { $1 }
        let iso = ISO8601DateFormatter()
        var owned = [String: String]()
        if let owner = contents.owner { owned[ownerAnnotation] = owner }
        secret.annotations = secret.annotations.merging(contents.templateAnnotations) { $1 }.merging(owned) { $1 }
            .merging([
                serialAnnotation: SerialNumbers.hex(leaf.serialNumber),
                notAfterAnnotation: iso.string(from: leaf.notValidAfter),
                renewAfterAnnotation: iso.string(from: contents.renewAfter),
                issuerAnnotation: contents.issuer,
            ]) { $1 }
        return secret
    }
}
