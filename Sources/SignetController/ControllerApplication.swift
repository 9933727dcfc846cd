import Hummingbird
import Logging
import ServiceLifecycle
import SignetKubernetes
import UnixSignals

/// `signet controller` as a process: leader election around the controller, and an HTTP endpoint for
/// /metrics, /healthz and /readyz (ready = leading or standing by with a working API connection).
public enum ControllerApplication {
    struct Controlling: Service {
        let election: LeaderElection
        let controller: CertificateController
        let certManager: CertManagerIssuer?
        let csrSigner: KubernetesCSRSigner?

        /// Everything the leader does, together: Certificates, and cert-manager's requests when asked.
        func run() async throws {
            await cancelWhenGracefulShutdown {
                await election.run {
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask { await controller.run() }
                        if let certManager { group.addTask { await certManager.run() } }
                        if let csrSigner { group.addTask { await csrSigner.run() } }
                    }
                }
            }
        }
    }

    /// Serves until SIGTERM or SIGINT; the controller stops at once (an issuance in flight resumes on the next leader
    /// from its pending key).
    public static func run(
        controller: CertificateController, certManager: CertManagerIssuer? = nil, csrSigner: KubernetesCSRSigner? = nil,
        election: LeaderElection,
        metrics: ControllerMetrics, host: String, port: Int, logger: Logger
    ) async throws {
        try await make(
            controller: controller, certManager: certManager, csrSigner: csrSigner, election: election,
            metrics: metrics, host: host, port: port,
            logger: logger
        )
        .runService(gracefulShutdownSignals: [.sigterm, .sigint])
    }

    static func make(
        controller: CertificateController, certManager: CertManagerIssuer?, csrSigner: KubernetesCSRSigner?,
        election: LeaderElection,
        metrics: ControllerMetrics, host: String, port: Int, logger: Logger
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { _, _ in metrics.render() }
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/readyz") { _, _ -> Response in
            do {
                _ = try await controller.client.document("/version")
                return Response(status: .ok, body: .init(byteBuffer: .init(string: "ok\n")))
            } catch {
                return Response(
                    status: .serviceUnavailable,
                    body: .init(byteBuffer: .init(string: "the API server is unreachable: \(error)\n")))
            }
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "signet-controller"),
            services: [
                Controlling(election: election, controller: controller, certManager: certManager, csrSigner: csrSigner)
            ],
            logger: logger
        )
    }
}
