import ArgumentParser
import Foundation
import Logging
import SignetAuthority
import SignetClient
import SignetDelivery
import SignetKeys
import SignetKubernetes
import SignetOpenAPI
import SwiftASN1
import X509

struct IssueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue",
        abstract: "Ask a Signet server for a certificate and write tls.crt, ca.crt (and tls.key).",
        discussion: """
            tls.crt is the leaf followed by the intermediates (what a kubernetes.io/tls Secret and nginx expect), \
            ca.crt the root (what curl --cacert and an Istio MUTUAL gateway expect). With --generate-key the key is \
            made here and written to tls.key (PKCS#8, 0600); it never leaves this machine.
            """
    )

    @OptionGroup var server: ServerOptions

    @Option(help: "A CSR (PEM) to send.")
    var csr: String?

    @Option(help: "Generate a key here instead: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096, ed25519.")
    var generateKey: String?

    @Option(help: "A DNS name for the certificate (repeatable).")
    var dns: [String] = []

    @Option(help: "An IP address for the certificate (repeatable).")
    var ip: [String] = []

    @Option(help: "server, client or server-client.")
    var profile: String = "server"

    @Option(help: "Lifetime, e.g. 2160h or P30D (default: the server's).")
    var duration: String?

    @Option(help: "Directory to write tls.crt, ca.crt and tls.key to.")
    var out: String?

    @Flag(help: "Replace existing files in --out.")
    var force = false

    @Option(
        help:
            "Also (or instead) write a kubernetes.io/tls Secret NAMESPACE/NAME for an Istio gateway's credentialName (needs --generate-key)."
    )
    var secret: String?

    @Option(help: "The kubeconfig for --secret (default: $KUBECONFIG, in-cluster, ~/.kube/config).")
    var kubeconfig: String?

    @Option(help: "The kubeconfig context for --secret (default: its current context).")
    var context: String?

    @Flag(help: "With --secret: take over an existing kubernetes.io/tls Secret that Signet did not write.")
    var adopt = false

    func validate() throws {
        guard (csr == nil) != (generateKey == nil) else {
            throw ValidationError("give exactly one of --csr and --generate-key")
        }
        guard out != nil || secret != nil else {
            throw ValidationError("give --out DIR, --secret NAMESPACE/NAME, or both")
        }
        if let secret {
            guard generateKey != nil else {
                throw ValidationError("--secret needs --generate-key: the Secret holds the key")
            }
            guard secret.split(separator: "/").count == 2 else {
                throw ValidationError("--secret must be NAMESPACE/NAME")
            }
        }
        guard Components.Schemas.Profile(rawValue: profile) != nil else {
            throw ValidationError("--profile must be server, client or server-client")
        }
    }

    func run() async throws {
        var keyPEM: String?
        let csrPEM: String
        if let csr {
            csrPEM = try String(contentsOfFile: csr, encoding: .utf8)
        } else {
            guard let algorithm = generateKey.flatMap(KeyAlgorithm.init(rawValue:)) else {
                throw ValidationError(
                    "--generate-key must be one of \(KeyAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let generated = try algorithm.generateWithRequest()
            keyPEM = generated.pkcs8PEM
            csrPEM = generated.csrPEM
        }
        let chosen = CertificateProfile(requested: profile) ?? .server
        let issued = try await SignetClient.with(server) { client in
            try await client.issue(
                csrPEM: csrPEM, dnsNames: dns, ipAddresses: ip, duration: duration, profile: chosen, namespace: nil)
        }
        print("serial     \(issued.serial)")
        print("notAfter   \(issued.notAfter.formatted(.iso8601))")
        print("renewAfter \(issued.renewAfter.formatted(.iso8601))")
        if let out {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try PEMFiles.write(issued.chain, to: out + "/tls.crt", mode: 0o644, overwrite: force)
            try PEMFiles.write(issued.ca, to: out + "/ca.crt", mode: 0o644, overwrite: force)
            if let keyPEM {
                try PEMFiles.write(keyPEM, to: out + "/tls.key", mode: 0o600, overwrite: force)
            }
            print("wrote      \(out)/tls.crt, \(out)/ca.crt" + (keyPEM == nil ? "" : ", \(out)/tls.key"))
        }
        if let secret, let keyPEM {
            try await writeSecret(secret, issued: issued, keyPEM: keyPEM)
        }
    }

    private func writeSecret(_ target: String, issued: Components.Schemas.IssuedCertificate, keyPEM: String)
        async throws
    {
        let parts = target.split(separator: "/").map(String.init)
        let chain = try PEMFiles.certificates(in: issued.chain, source: "the chain")
        guard let root = try PEMFiles.certificates(in: issued.ca, source: "the root").first else {
            throw CommandFailure("the answer has no root certificate")
        }
        let contents = TLSSecretContents(
            chain: chain, privateKeyPEM: keyPEM, root: root,
            issuer: chain.dropFirst().first.map { "\($0.subject)" } ?? "\(root.subject)",
            renewAfter: issued.renewAfter
        )
        let logger = Logger(label: "signet")
        let client = try KubernetesClient(
            configuration: try KubernetesConfiguration.resolve(kubeconfig: kubeconfig, context: context), logger: logger
        )
        do {
            let written = try await SecretDelivery(client: client, logger: logger).deliver(
                contents, namespace: parts[0], name: parts[1], adopt: adopt)
            try await client.shutdown()
            print("secret     \(parts[0])/\(parts[1]) (resourceVersion \(written.resourceVersion ?? "?"))")
        } catch {
            try? await client.shutdown()
            throw CommandFailure(
                "the certificate \(issued.serial) was issued, but the Secret was not written: \(error)")
        }
    }
}
