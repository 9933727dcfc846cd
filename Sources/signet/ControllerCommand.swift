import ArgumentParser
import Foundation
import Logging
import SignetClient
import SignetController
import SignetKubernetes
import SignetLogging
import SignetServer

struct ControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "controller",
        abstract: "Run the in-cluster renewal controller for certificates.signet.dev resources.",
        discussion: """
            Watches Certificates and the Secrets it writes, makes keys in the cluster, asks Signet for certificates \
            with its projected service-account token (naming each Certificate's namespace, whose policy Signet \
            applies), writes Istio-ready Secrets, and renews before expiry. Replicas elect a leader with a Lease; \
            only the leader works. /metrics, /healthz and /readyz are served on --listen.
            """
    )

    @Option(help: "Signet's URL (env SIGNET_SERVER).")
    var server: String?

    @Option(help: "CA bundle that verifies Signet's certificate (env SIGNET_CACERT).")
    var cacert: String?

    @Option(help: "The projected service-account token (audience: Signet's serviceAccounts.audience).")
    var tokenFile = "/var/run/secrets/signet/token"

    @Option(help: "A kubeconfig (default: in-cluster, then $KUBECONFIG, ~/.kube/config).")
    var kubeconfig: String?

    @Option(help: "The kubeconfig context.")
    var context: String?

    @Option(help: "Only Certificates in this namespace (default: all).")
    var namespace: String?

    @Option(help: "Serve Certificates whose issuerRef.name is this.")
    var issuerName = "signet"

    @Option(help: "The Lease's namespace (default: the controller's own).")
    var leaseNamespace: String?

    @Option(help: "The Lease's name.")
    var leaseName = "signet-controller"

    @Option(help: "This replica's identity in the Lease (default: the host name, which is the pod name).")
    var identity: String?

    @Option(help: "Address for /metrics, /healthz and /readyz.")
    var listen = "0.0.0.0:9402"

    @Flag(help: "Also make Certificates for Istio Gateways annotated signet.dev/issue: \"true\".")
    var gateways = false

    @Flag(
        help:
            "Also be cert-manager's external issuer: SignetIssuer and SignetClusterIssuer, and the approved CertificateRequests naming them."
    )
    var certManager = false

    @Option(help: "The audience of the token in --token-file (what SignetIssuer resources may name in spec.auth).")
    var tokenAudience = "signet"

    @Option(
        help: ArgumentHelp(
            "Sign Kubernetes CertificateSigningRequests of this signerName under this namespace's policy: SIGNER-NAME=NAMESPACE (repeatable).",
            discussion:
                "e.g. signet.dev/istio=istio-system for Istio's external-CA mode; only approved requests are signed."
        ))
    var csrSigner: [String] = []

    @Option(
        help: ArgumentHelp(
            "Let Gateways in one namespace have Certificates made in others: GATEWAY-NAMESPACE=NAMESPACE[,NAMESPACE...] (repeatable).",
            discussion:
                "By default a Gateway's Certificates go only into its own namespace, whatever its selector or annotations say."
        ))
    var gatewayNamespaces: [String] = []

    @Flag(
        help:
            "Accept a plain-HTTP API server (a local test cluster); tokens and Secrets would cross the network unencrypted."
    )
    var allowPlainHttp = false

    @Option(
        help:
            "How often Signet is asked whether each Certificate's current certificate was revoked (seconds); a revoked one is replaced at once."
    )
    var revocationCheckSeconds: Int = 60

    @Option(
        help:
            "How often Signet's chain CRLs are read (seconds); when they change, every Secret carrying ca.crl is rewritten."
    )
    var crlRefreshSeconds: Int = 5

    @Option(help: "Certificates reconciled at the same time.")
    var concurrency = 4

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(help: "Log format: text, or json (one object per line, for log pipelines).")
    var logFormat: LogFormat = .text

    func run() async throws {
        logFormat.bootstrap()
        var logger = Logger(label: "signet-controller")
        logger.logLevel = logLevel
        let environment = ProcessInfo.processInfo.environment
        guard let server = server ?? environment["SIGNET_SERVER"] else {
            throw ValidationError("give --server URL (or set SIGNET_SERVER)")
        }
        guard let (host, port) = HostPort.split(listen, wildcardHost: "0.0.0.0") else {
            throw ValidationError("--listen must be host:port")
        }
        var kubernetes = try KubernetesConfiguration.resolve(kubeconfig: kubeconfig, context: context)
        kubernetes.allowPlainHTTP = allowPlainHttp
        let client = try KubernetesClient(configuration: kubernetes, logger: logger)
        let token = RotatingTokenFile(path: tokenFile)
        let issuer = try SignetClient(url: server, caFile: cacert ?? environment["SIGNET_CACERT"]) {
            do {
                return try token.current()
            } catch {
                throw SignetClient.Failure(
                    status: nil, description: "cannot read the service-account token \(token.path)")
            }
        }
        var settings = ControllerSettings()
        settings.namespace = namespace
        settings.issuerName = issuerName
        settings.concurrency = concurrency
        guard revocationCheckSeconds >= 1 else {
            throw ValidationError("--revocation-check-seconds must be at least 1")
        }
        settings.revocationCheck = .seconds(revocationCheckSeconds)
        guard crlRefreshSeconds >= 1 else { throw ValidationError("--crl-refresh-seconds must be at least 1") }
        settings.crlRefresh = .seconds(crlRefreshSeconds)
        settings.gatewayShim = gateways
        settings.certManager = certManager
        settings.tokenAudience = tokenAudience
        do {
            settings.csrSigners = try KubernetesCSRRules.signers(parsing: csrSigner)
        } catch {
            throw ValidationError(error.description)
        }
        do {
            settings.gatewayNamespaces = try GatewayShim.GatewayNamespaces(parsing: gatewayNamespaces)
        } catch {
            throw ValidationError(error.description)
        }
        let metrics = ControllerMetrics()
        let controller = CertificateController(
            client: client, issuer: issuer, settings: settings, metrics: metrics, logger: logger)
        let certManagerIssuer =
            certManager
            ? CertManagerIssuer(client: client, signet: issuer, settings: settings, metrics: metrics, logger: logger)
            : nil
        let csrSigner =
            settings.csrSigners.isEmpty
            ? nil
            : KubernetesCSRSigner(
                client: client, signet: issuer, signers: settings.csrSigners, settings: settings, metrics: metrics,
                logger: logger)
        let election = LeaderElection(
            client: client, namespace: leaseNamespace ?? kubernetes.namespace, name: leaseName,
            identity: identity ?? ProcessInfo.processInfo.hostName + "-"
                + String(ProcessInfo.processInfo.processIdentifier), logger: logger
        )
        do {
            try await ControllerApplication.run(
                controller: controller, certManager: certManagerIssuer, csrSigner: csrSigner, election: election,
                metrics: metrics, host: host, port: port, logger: logger
            )
        } catch {
            try? await issuer.shutdown()
            try? await client.shutdown()
            throw error
        }
        try await issuer.shutdown()
        try await client.shutdown()
    }
}

extension LogFormat: ExpressibleByArgument {}
