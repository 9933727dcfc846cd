import Logging
import ServiceLifecycle
import SignetAuthority
import SignetLedger
import Synchronization
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Keeps the issuing CA's CRL fresh, because a CRL past its nextUpdate makes every client of the CA fail wherever
/// CRLs are checked: one is signed at start when there is none or the last is past half its validity, again when
/// half its validity has passed, and within a second or two of any revocation. Numbers are durable and strictly
/// increasing (above the last stored, and never below the signing time in milliseconds, so a lost row cannot bring
/// one back). Signed through the CA's key like certificates: a key file, Key Vault or a PKCS#11 token alike.
public final class CRLPublisher: Sendable {
    let ca: IssuingCA
    let ledger: any RevocationListStore
    let validity: Duration
    let metrics: SignetMetrics?
    let logger: Logger
    private let now: @Sendable () -> Date
    private let latest = Mutex<StoredCRL?>(nil)
    /// Set by a revocation; the publishing loop re-signs when it sees it.
    private let stale = Mutex(false)
    /// Told after each new CRL, published here or by another replica on the same ledger (`adopted` true): the
    /// Secrets that carry `ca.crl` are brought up to date, and OCSP answers cached before a revocation another
    /// replica made are forgotten.
    private let published = Mutex<(@Sendable (_ adopted: Bool) async -> Void)?>(nil)

    public func onPublish(_ action: @escaping @Sendable (_ adopted: Bool) async -> Void) {
        published.withLock { $0 = action }
    }

    /// The chain's CRLs as PEM, the intermediate's then the root's: what `ca.crl` holds, valid until the earlier
    /// nextUpdate. Nil without the root's CRL.
    public func chain() async throws -> (pem: String, thisUpdate: Date, nextUpdate: Date)? {
        guard let root = try rootCRL() else { return nil }
        let own = try await current()
        return (
            PEM.encode(own.der, type: "X509 CRL") + PEM.encode(root.der, type: "X509 CRL"),
            max(own.thisUpdate, root.thisUpdate), min(own.nextUpdate, root.nextUpdate)
        )
    }

    /// `chain()`'s PEM; nil without the root's CRL or when it cannot be read.
    public func bundle() async -> String? { try? await chain()?.pem }

    public var issuerKeyID: String { ca.keyIdentifier.hexString }
    /// The root's CRL, made offline (`signet ca crl`), served as it is from this file.
    let rootCRLFile: String?

    /// The root's key identifier, under which its CRL is served.
    public var rootKeyID: String {
        ((try? ca.root.extensions.subjectKeyIdentifier)?.map { Array($0.keyIdentifier) }
            ?? Array(SubjectKeyIdentifier(hash: ca.root.publicKey).keyIdentifier)).hexString
    }

    /// The root's CRL (DER) and its validity, read from `rootCRLFile` on each call (it is replaced offline).
    public func rootCRL() throws -> (der: [UInt8], thisUpdate: Date, nextUpdate: Date)? {
        guard let path = rootCRLFile else { return nil }
        let der = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let validity = try RevocationList.validity(ofDER: der)
        return (der, validity.thisUpdate, validity.nextUpdate)
    }

    public init(
        ca: IssuingCA, ledger: any RevocationListStore, validity: Duration, rootCRLFile: String? = nil,
        metrics: SignetMetrics? = nil, logger: Logger,
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.rootCRLFile = rootCRLFile
        self.metrics = metrics
        self.ca = ca
        self.ledger = ledger
        self.validity = validity
        self.logger = logger
        self.now = now
    }

    /// Called after every revocation.
    public func revoked() {
        stale.withLock { $0 = true }
    }

    /// The CRL to serve: the latest published (from memory, else the ledger), or a new one if there is none.
    public func current() async throws -> StoredCRL {
        if let known = latest.withLock({ $0 }) { return known }
        if let stored = try await ledger.latestCRL(issuerKeyID: issuerKeyID) {
            latest.withLock { $0 = stored }
            return stored
        }
        return try await publish()
    }

    /// Signs and stores a new CRL listing every revoked certificate of this CA not expired before the previous CRL.
    @discardableResult
    public func publish() async throws -> StoredCRL {
        stale.withLock { $0 = false }
        let issued = now()
        let previous = try await ledger.latestCRL(issuerKeyID: issuerKeyID)
        let revoked = try await ledger.revokedCertificates(
            issuerKeyID: issuerKeyID, expiredAfter: previous?.thisUpdate ?? issued)
        let number = max((previous?.number ?? 0) + 1, Int64(issued.timeIntervalSince1970 * 1000))
        let list = try await RevocationList.sign(
            by: ca, number: number, thisUpdate: issued, nextUpdate: issued.addingTimeInterval(validity.timeInterval),
            entries: revoked.compactMap { entry in
                [UInt8](hexString: entry.serial).map {
                    RevocationList.Entry(serial: $0, revokedAt: entry.revokedAt, reason: entry.reason)
                }
            }
        )
        metrics?.recordCRLSignature()
        let crl = StoredCRL(
            issuerKeyID: issuerKeyID, number: number, thisUpdate: list.thisUpdate, nextUpdate: list.nextUpdate,
            entries: list.entries.count, der: list.der)
        let kept = try await ledger.storeCRL(crl)
        let served = kept ? crl : (try await ledger.latestCRL(issuerKeyID: issuerKeyID) ?? crl)
        latest.withLock { $0 = served }
        if let action = published.withLock({ $0 }) { Task { await action(false) } }
        logger.info(
            "CRL published",
            metadata: [
                "number": "\(served.number)", "entries": "\(served.entries)",
                "nextUpdate": "\(served.nextUpdate.formatted(.iso8601))",
            ])
        return served
    }

    /// Why the CRLs this server serves put clients at risk, nil when they do not: its own or the root's is within
    /// `margin` of its nextUpdate, or the configured root CRL cannot be read. What /readyz reports.
    public func risk(margin: Duration) async -> String? {
        let horizon = now().addingTimeInterval(margin.timeInterval)
        // What is published, never a new signature: readiness probes must not sign.
        var published = latest.withLock { $0 }
        if published == nil { published = try? await ledger.latestCRL(issuerKeyID: issuerKeyID) }
        if let own = published, own.nextUpdate < horizon {
            return "the CRL's nextUpdate (\(own.nextUpdate.formatted(.iso8601))) is within \(Lifetime.format(margin))"
        }
        guard rootCRLFile != nil else { return nil }
        guard let root = try? rootCRL() else { return "the root's CRL (crl.rootCRL) cannot be read" }
        if root.nextUpdate < horizon {
            return
                "the root's CRL (crl.rootCRL, made offline with signet ca crl) has nextUpdate \(root.nextUpdate.formatted(.iso8601)), within \(Lifetime.format(margin))"
        }
        return nil
    }

    /// Takes up a newer CRL another replica published (its revocations included); returns whether there was one.
    @discardableResult
    public func adoptNewer() async throws -> Bool {
        guard let known = latest.withLock({ $0 }),
            let number = try await ledger.latestCRLNumber(issuerKeyID: issuerKeyID), number > known.number,
            let stored = try await ledger.latestCRL(issuerKeyID: issuerKeyID)
        else { return false }
        latest.withLock { $0 = stored }
        logger.info("CRL published by another replica taken up", metadata: ["number": "\(stored.number)"])
        if let action = published.withLock({ $0 }) { await action(true) }
        return true
    }

    /// When the current CRL should be replaced: half its validity after thisUpdate.
    func due(_ crl: StoredCRL) -> Date {
        crl.thisUpdate.addingTimeInterval(crl.nextUpdate.timeIntervalSince(crl.thisUpdate) / 2)
    }

    /// The publishing loop, a service beside the HTTP server.
    struct Loop: Service {
        let publisher: CRLPublisher

        func run() async throws {
            var failures = 0
            while !Task.isShuttingDownGracefully, !Task.isCancelled {
                var pause = Duration.seconds(1)
                do {
                    // Another replica's revocation reaches this one's CRL (and OCSP answers) within a tick.
                    try await publisher.adoptNewer()
                    let crl = try await publisher.current()
                    if publisher.stale.withLock({ $0 }) || publisher.now() >= publisher.due(crl) {
                        try await publisher.publish()
                    }
                    failures = 0
                } catch {
                    // A signer that is down is not asked every second: 2 s, 4 s, … up to a minute.
                    failures += 1
                    pause = .seconds(min(60, 1 << min(failures, 6)))
                    publisher.logger.error(
                        "could not publish the CRL; retrying", metadata: ["error": "\(error)", "retryIn": "\(pause)"])
                }
                let wait = pause
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            }
        }
    }
}
