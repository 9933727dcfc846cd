import Foundation
import Logging
import ServiceLifecycle
import SignetLedger

/// Runs beside the ACME front end: validations a stop interrupted are resumed at start, and spent nonces and
/// unfinished orders and authorizations a day past their expiry are deleted every hour.
struct ACMEMaintenance: Service {
    let service: ACMEService
    let logger: Logger

    func run() async throws {
        await service.resumeValidations()
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                let removed = try await service.store.pruneACME(now: .init(), retention: .seconds(86_400))
                if removed > 0 { logger.info("pruned expired ACME objects", metadata: ["rows": "\(removed)"]) }
            } catch {
                logger.error("could not prune ACME objects", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(3600)) }
        }
    }
}
