import Crypto
import Logging
import SignetAuthority
import SignetLedger
import SwiftASN1
import Synchronization
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Signet's OCSP responder (RFC 6960). Answers come from the ledger (good, revoked with its time and reason, unknown)
/// and are signed by a delegated responder certificate whose P-256 key lives only in this process's memory: the CA
/// key (a file, Key Vault or an HSM) signs that certificate once per renewal, never a response. The responder
/// certificate is recorded in the ledger like every certificate Signet signs (profile `ocsp-signing`), made on first
/// use and renewed when half its life has passed.
///
/// Answers without a nonce are cached by CertID until half their validity has passed, and re-signed at once when
/// their certificate is revoked; a request with a nonce gets a response signed for it (the nonce echoed).
public final class OCSPResponder: Sendable {
    struct Delegate: Sendable {
        let certificate: Certificate
        let key: Certificate.PrivateKey
        var notAfter: Date { certificate.notValidAfter }
    }

    struct Cached: Sendable {
        let certID: OCSPCertID
        let der: [UInt8]
        let thisUpdate: Date
        let nextUpdate: Date
        let refreshAt: Date
        let outcome: String
    }

    /// A response and, when it may be cached by HTTP caches, its validity.
    public struct Answer: Sendable {
        public let der: [UInt8]
        public let validity: (thisUpdate: Date, nextUpdate: Date)?
        /// good, revoked or unknown (the first certificate's, for a request about several), or the failure status.
        public let outcome: String
    }

    public static let requester = "signet:ocsp-responder"
    static let cacheLimit = 100_000

    let ca: IssuingCA
    let ledger: any IssuedCertificateStore
    /// nextUpdate - thisUpdate of every answer.
    let validity: Duration
    /// How long each responder certificate is valid; it is replaced when half has passed.
    let responderLifetime: Duration
    let metrics: SignetMetrics?
    let logger: Logger
    private let now: @Sendable () -> Date
    private let issuerHashes: [OCSPCertID.HashAlgorithm: (name: [UInt8], key: [UInt8])]
    private let cache = Mutex<[[UInt8]: Cached]>([:])
    private let keeper: DelegateKeeper

    public init(
        ca: IssuingCA, ledger: any IssuedCertificateStore, validity: Duration, responderLifetime: Duration,
        metrics: SignetMetrics? = nil, logger: Logger,
        now: @escaping @Sendable () -> Date = Date.init
    ) throws {
        self.ca = ca
        self.ledger = ledger
        self.validity = validity
        self.responderLifetime = responderLifetime
        self.metrics = metrics
        self.logger = logger
        self.now = now
        issuerHashes = [
            .sha1: try OCSPCertID.issuerHashes(of: ca.certificate, algorithm: .sha1),
            .sha256: try OCSPCertID.issuerHashes(of: ca.certificate, algorithm: .sha256),
        ]
        keeper = DelegateKeeper()
    }

    /// The answer to an OCSPRequest's DER, whatever it holds: malformedRequest for what does not parse, unauthorized
    /// for a CertID of another issuer (or a hash Signet does not use), tryLater when the ledger or the responder
    /// certificate is not available.
    public func respond(to requestDER: [UInt8]) async -> Answer {
        let request: OCSPRequest
        do {
            request = try OCSPRequest(derEncoded: requestDER)
        } catch {
            return failure(.malformedRequest, "malformedRequest")
        }
        for id in request.certIDs {
            guard let algorithm = id.hashAlgorithm, let hashes = issuerHashes[algorithm],
                hashes.name == id.issuerNameHash, hashes.key == id.issuerKeyHash
            else {
                return failure(.unauthorized, "unauthorized")
            }
        }
        let at = now()
        if request.nonce == nil, request.certIDs.count == 1,
            let cached = cache.withLock({ $0[request.certIDs[0].der] }), at < cached.refreshAt
        {
            return Answer(der: cached.der, validity: (cached.thisUpdate, cached.nextUpdate), outcome: cached.outcome)
        }
        do {
            return try await sign(request.certIDs, nonce: request.nonce, at: at)
        } catch {
            logger.error("cannot answer an OCSP request", metadata: ["error": "\(error)"])
            return failure(.tryLater, "tryLater")
        }
    }

    /// A certificate was revoked: its cached answers are replaced by signed `revoked` ones at once.
    public func revoked(serial: String) {
        let stale = cache.withLock { cache in
            let found = cache.values.filter { $0.certID.serial.hexString == serial }
            for entry in found { cache[entry.certID.der] = nil }
            return found.map(\.certID)
        }
        guard !stale.isEmpty else { return }
        Task {
            for certID in stale { _ = try? await self.sign([certID], nonce: nil, at: self.now()) }
        }
    }

    /// Another replica revoked a certificate (its CRL says so): any cached answer may be about it, so all are
    /// forgotten and signed afresh on their next request.
    public func forgetCachedAnswers() {
        cache.withLock { $0.removeAll() }
    }

    /// What puts OCSP answers at risk, for /readyz: a responder certificate that could not be replaced and is past
    /// half its life (nil when all is well, or before the first request made one).
    public func risk() async -> String? {
        guard let (delegate, failure) = await keeper.state() else { return nil }
        let due = dueDate(of: delegate)
        guard now() >= due, let failure else { return nil }
        return
            "the OCSP responder certificate ends \(delegate.notAfter.formatted(.iso8601)) and could not be replaced: \(failure)"
    }

    private func sign(_ certIDs: [OCSPCertID], nonce: [UInt8]?, at: Date) async throws -> Answer {
        var statuses: [OCSPCertStatus] = []
        for id in certIDs { statuses.append(try await status(of: id)) }
        let delegate = try await currentDelegate(at: at)
        let thisUpdate = Date(timeIntervalSince1970: at.timeIntervalSince1970.rounded(.down))
        let nextUpdate = min(thisUpdate.addingTimeInterval(validity.timeInterval), delegate.notAfter)
        let responses = zip(certIDs, statuses).map {
            OCSPSingleResponse(certID: $0.der, status: $1, thisUpdate: thisUpdate, nextUpdate: nextUpdate)
        }
        let der = try OCSPResponse.signed(
            responses, producedAt: thisUpdate, responder: delegate.certificate, responderKey: delegate.key, nonce: nonce
        )
        metrics?.recordOCSPSignature()
        let outcome = statuses.count == 1 ? Self.name(statuses[0]) : "good"
        if nonce == nil, certIDs.count == 1 {
            let entry = Cached(
                certID: certIDs[0], der: der, thisUpdate: thisUpdate, nextUpdate: nextUpdate,
                refreshAt: thisUpdate.addingTimeInterval(nextUpdate.timeIntervalSince(thisUpdate) / 2), outcome: outcome
            )
            cache.withLock { cache in
                if cache.count >= Self.cacheLimit { cache.removeAll() }
                cache[entry.certID.der] = entry
            }
            return Answer(der: der, validity: (thisUpdate, nextUpdate), outcome: outcome)
        }
        return Answer(der: der, validity: nil, outcome: outcome)
    }

    private func status(of id: OCSPCertID) async throws -> OCSPCertStatus {
        guard let entry = try await ledger.certificate(serial: id.serial.hexString),
            entry.issuerKeyID == ca.keyIdentifier.hexString
        else { return .unknown }
        if entry.storedStatus == .revoked {
            return .revoked(
                at: entry.revokedAt ?? entry.issuedAt,
                reason: entry.revocationReason.flatMap(RevocationReason.init(name:)) ?? .unspecified)
        }
        return .good
    }

    private static func name(_ status: OCSPCertStatus) -> String {
        switch status {
        case .good: "good"
        case .revoked: "revoked"
        case .unknown: "unknown"
        }
    }

    private func failure(_ status: OCSPResponse.Failure, _ name: String) -> Answer {
        Answer(der: OCSPResponse.failure(status), validity: nil, outcome: name)
    }

    private func dueDate(of delegate: Delegate) -> Date {
        delegate.certificate.notValidBefore.addingTimeInterval(
            delegate.notAfter.timeIntervalSince(delegate.certificate.notValidBefore) / 2
        )
    }

    /// The responder certificate to sign with: the current one while it is not due; past half its life, the current
    /// one still signs while a replacement is made in the background; none (or an expired one) makes this wait.
    private func currentDelegate(at: Date) async throws -> Delegate {
        if let current = await keeper.current(), at < current.notAfter.addingTimeInterval(-validity.timeInterval / 2) {
            if at >= dueDate(of: current) { Task { await keeper.renewInBackground(using: self.makeDelegate) } }
            return current
        }
        return try await keeper.renew(using: makeDelegate)
    }

    /// A new key in memory, a certificate for it signed by the CA and recorded before it signs anything.
    @Sendable private func makeDelegate() async throws -> Delegate {
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let serial = SerialNumbers.random()
        let issuedAt = now()
        let validity = LeafCertificateFactory.validity(for: responderLifetime, now: issuedAt)
        let certificate = try await LeafCertificateFactory.ocspResponder(
            publicKey: publicKey, by: ca, serial: serial, validity: validity, name: "Signet OCSP Responder"
        )
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        let serialHex = SerialNumbers.hex(serial)
        let entry = CertificateEntry(
            serial: serialHex, issuerKeyID: ca.keyIdentifier.hexString, subject: "\(certificate.subject)", dnsNames: [],
            ipAddresses: [],
            publicKeySHA256: publicKey.sha256Fingerprint, csrSHA256: "", profile: .ocspSigning,
            notBefore: validity.notBefore,
            notAfter: validity.notAfter, requester: Self.requester, issuedAt: issuedAt, der: serializer.serializedBytes
        )
        try await ledger.record(
            entry,
            event: AuditEvent(
                at: issuedAt, actor: Self.requester, action: "certificate.issue", outcome: .success, subject: serialHex)
        )
        logger.info(
            "OCSP responder certificate issued",
            metadata: ["serial": "\(serialHex)", "notAfter": "\(validity.notAfter)"])
        return Delegate(certificate: certificate, key: Certificate.PrivateKey(key))
    }
}

/// Holds the responder certificate and makes sure one replacement is made at a time.
private actor DelegateKeeper {
    private var delegate: OCSPResponder.Delegate?
    private var renewing: Task<OCSPResponder.Delegate, any Error>?
    private var lastFailure: String?
    private var lastBackgroundAttempt = ContinuousClock.now - .seconds(3600)

    func current() -> OCSPResponder.Delegate? { delegate }

    func state() -> (OCSPResponder.Delegate, String?)? { delegate.map { ($0, lastFailure) } }

    /// A replacement while the current certificate still signs: tried at most every ten seconds, so a CA signer that is
    /// down is not asked on every request.
    func renewInBackground(using make: @escaping @Sendable () async throws -> OCSPResponder.Delegate) async {
        guard renewing == nil, ContinuousClock.now - lastBackgroundAttempt > .seconds(10) else { return }
        lastBackgroundAttempt = .now
        _ = try? await renew(using: make)
    }

    func renew(using make: @escaping @Sendable () async throws -> OCSPResponder.Delegate) async throws
        -> OCSPResponder.Delegate
    {
        if let renewing { return try await renewing.value }
        let task = Task { try await make() }
        renewing = task
        defer { renewing = nil }
        do {
            let made = try await task.value
            delegate = made
            lastFailure = nil
            return made
        } catch {
            lastFailure = "\(error)"
            throw error
        }
    }
}
