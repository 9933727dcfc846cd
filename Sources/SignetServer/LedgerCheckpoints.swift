import Logging
import ServiceLifecycle
import SignetLedger

/// Runs the ledger's WAL checkpoint once a second beside the HTTP server, so that the write that crosses the
/// WAL threshold never pays for copying pages into the database file.
struct LedgerCheckpoints: Service {
    let ledger: CertificateLedger
    let logger: Logger
    var interval: Duration = .seconds(1)

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await ledger.checkpoint()
            } catch {
                logger.warning("ledger checkpoint failed", metadata: ["error": "\(error)"])
            }
            try? await gracefulShutdownAwareSleep(interval)
        }
    }

    private func gracefulShutdownAwareSleep(_ duration: Duration) async throws {
        try await cancelWhenGracefulShutdown {
            try await Task.sleep(for: duration)
        }
    }
}
