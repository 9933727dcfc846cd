import Logging
import OpenAPIRuntime
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetOpenAPI

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The REST handlers: each decodes its generated input, calls a service, and encodes the answer; the store is read
/// directly only for readiness and the metrics.
/// Errors are thrown as values and turned into problems once, by `APIEdgeMiddleware`.
public struct SignetAPI: APIProtocol {
    let issuance: IssuanceService
    let ledger: any StoreHealth & ManagedCertificateStore & RevocationListStore
    let authenticator: CallerAuthenticator
    let metrics: SignetMetrics
    let signer: any CASigner
    let managed: ManagedCertificates
    let crl: CRLPublisher?
    /// Issuances per caller identity.
    let issuanceLimiter: RateLimiter
    /// `/readyz` and `/metrics` are unauthenticated: they answer from results at most `probeCacheSeconds` old.
    let readiness: RecentResult<Components.Schemas.Readiness>
    let exposition: RecentResult<Result<String, any Error>>

    public init(
        issuance: IssuanceService, ledger: any StoreHealth & ManagedCertificateStore & RevocationListStore,
        authenticator: CallerAuthenticator,
        metrics: SignetMetrics, signer: any CASigner,
        managed: ManagedCertificates, limits: RequestLimits = .init(), signerDescription: String = "the CA key",
        crl: CRLPublisher? = nil, crlReadinessMargin: Duration = .seconds(86_400), ocsp: OCSPResponder? = nil,
        logger: Logger = Logger(label: "signet")
    ) {
        let crlIssuer = issuance.ca.keyIdentifier.hexString
        self.managed = managed
        self.issuanceLimiter = RateLimiter(rate: limits.issuancesPerSecond, burst: limits.issuanceBurst)
        let period = Duration.milliseconds(Int64(limits.probeCacheSeconds * 1000))
        self.readiness = RecentResult(lifetime: period) {
            // Unauthenticated: the answer says what fails, the log says why.
            var ledgerState = "ok"
            var signerState = "ok"
            do {
                try await ledger.checkHealth()
            } catch {
                ledgerState = "failing: the ledger cannot be written"
                logger.error("not ready: the ledger", metadata: ["error": "\(error)"])
            }
            do {
                try await signer.checkHealth()
            } catch {
                signerState = "failing: \(signerDescription) does not answer"
                logger.error("not ready: the signer", metadata: ["error": "\(error)"])
            }
            // A CRL close to its nextUpdate is an outage in waiting: every client fails once it passes.
            var crlState = "ok"
            if let risk = await crl?.risk(margin: crlReadinessMargin) {
                crlState = "failing: " + risk
                logger.error("not ready: a CRL is about to go stale", metadata: ["risk": "\(risk)"])
            }
            var ocspState: String?
            if let ocsp {
                ocspState = "ok"
                if let risk = await ocsp.risk() {
                    ocspState = "failing: " + risk
                    logger.error("not ready: OCSP answers are at risk", metadata: ["risk": "\(risk)"])
                }
            }
            return Components.Schemas.Readiness(
                ready: ledgerState == "ok" && signerState == "ok" && crlState == "ok" && (ocspState ?? "ok") == "ok",
                ledger: ledgerState, signer: signerState, crl: crlState, ocsp: ocspState
            )
        }
        self.exposition = RecentResult(lifetime: period) {
            do { return .success(try await metrics.render(from: ledger, crlIssuer: crlIssuer)) } catch {
                return .failure(error)
            }
        }
        self.issuance = issuance
        self.ledger = ledger
        self.authenticator = authenticator
        self.metrics = metrics
        self.crl = crl
        self.signer = signer
    }

    public func issueCertificate(_ input: Operations.IssueCertificate.Input) async throws
        -> Operations.IssueCertificate.Output
    {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        guard caller.mayIssue else { throw AuthorizationError.readOnly(caller.identity) }
        if let wait = issuanceLimiter.take(caller.identity) {
            metrics.recordRateLimited("issuance")
            throw RateLimited(
                limit: "issuance", retryAfter: wait,
                description: "'\(caller.identity)' is issuing faster than its limit; try again later")
        }
        let body: Components.Schemas.IssueRequest
        switch input.body {
        case .json(let decoded): body = decoded
        }
        guard body.csr.utf8.count <= Self.maximumCSRLength else {
            throw Problem(
                "bad-csr", "Unacceptable CSR", status: 400,
                detail: "the CSR is \(body.csr.utf8.count) bytes; at most \(Self.maximumCSRLength) are accepted")
        }
        let request = IssuanceRequest(
            csrPEM: body.csr,
            dnsNames: body.dnsNames,
            ipAddresses: body.ipAddresses,
            duration: body.duration,
            profile: body.profile.map { CertificateProfile(rawValue: $0.rawValue) ?? .server }
        )
        let issued = try await issuance.issue(request, for: caller)
        return .created(
            .init(
                headers: .init(location: "/v1/certificates/\(issued.entry.serial)"),
                body: .json(
                    .init(
                        serial: issued.entry.serial,
                        certificate: issued.leafPEM,
                        chain: issued.chainPEM,
                        ca: issued.rootPEM,
                        notBefore: issued.entry.notBefore,
                        notAfter: issued.entry.notAfter,
                        renewAfter: issued.renewAfter
                    ))
            ))
    }

    /// `maxLength` of `csr` in api/openapi.yaml: an RSA-4096 CSR with a hundred names is a small part of it.
    static let maximumCSRLength = 60_000

    public func listCertificates(_ input: Operations.ListCertificates.Input) async throws
        -> Operations.ListCertificates.Output
    {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        var query = CertificateQuery()
        let parameters = input.query
        if let name = parameters.dnsName {
            query.dnsName = try lookupKey(name)
        }
        query.status = parameters.status.flatMap { CertificateStatus(rawValue: $0.rawValue) }
        query.expiringBefore = parameters.expiringBefore
        query.issuedAfter = parameters.issuedAfter
        query.issuedBefore = parameters.issuedBefore
        if let requester = parameters.requester, !(1...512).contains(requester.count) {
            throw Problem(
                "invalid-query", "Invalid query", status: 400, detail: "requester must be 1 to 512 characters")
        }
        query.requester = parameters.requester
        // A tenant reads what it asked for (and its managed certificates'); an auditor reads everything.
        if !caller.isAuditor {
            if let requested = parameters.requester {
                guard try await managed.mayRead(requester: requested, by: caller) else {
                    throw AuthorizationError.notYours(caller.identity, requested)
                }
            } else {
                query.requester = caller.identity
            }
        }
        if let fingerprint = parameters.publicKeySHA256 {
            guard fingerprint.count == 64, fingerprint.allSatisfy(\.isHexDigit) else {
                throw Problem(
                    "invalid-query", "Invalid query", status: 400,
                    detail: "publicKeySHA256 must be 64 hexadecimal characters")
            }
            query.publicKeySHA256 = fingerprint
        }
        if let limit = parameters.limit {
            guard (1...CertificateQuery.maximumLimit).contains(limit) else {
                throw Problem(
                    "invalid-query", "Invalid query", status: 400,
                    detail: "limit must be between 1 and \(CertificateQuery.maximumLimit)")
            }
            query.limit = limit
        }
        query.cursor = parameters.cursor
        let page = try await issuance.certificates(matching: query)
        let now = Date()
        return .ok(
            .init(body: .json(.init(items: page.entries.map { record($0, now: now) }, nextCursor: page.nextCursor))))
    }

    /// A serial as the ledger keys it: lower-case hexadecimal, at most 21 octets.
    private func serialParameter(_ text: String) throws -> String {
        let serial = text.lowercased()
        guard !serial.isEmpty, serial.count <= 42, serial.allSatisfy(\.isHexDigit) else {
            throw Problem(
                "invalid-serial", "Invalid serial", status: 400,
                detail: "serial '\(text)' is not a hexadecimal serial number")
        }
        return serial
    }

    public func revokeCertificate(_ input: Operations.RevokeCertificate.Input) async throws
        -> Operations.RevokeCertificate.Output
    {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        let serial = try serialParameter(input.path.serial)
        guard case .json(let body) = input.body,
            let reason = RevocationReason(name: body.reason?.rawValue ?? "unspecified"), reason.mayBeRequested
        else {
            throw Problem(
                "invalid-reason", "Invalid reason", status: 400,
                detail:
                    "reason must be one of unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn"
            )
        }
        guard let entry = try await issuance.certificate(serial: serial),
            try await managed.mayRead(requester: entry.requester, by: caller) || caller.isAdministrator
        else {
            throw Problem(
                "not-found", "No such certificate", status: 404,
                detail: "no certificate with serial \(serial) was issued by this CA")
        }
        guard try await managed.mayRevoke(requester: entry.requester, by: caller) else {
            throw Problem(
                "not-yours", "Not your certificate", status: 403,
                detail:
                    "certificate \(serial) was issued to \(entry.requester); it may be revoked by that caller or an administrator"
            )
        }
        switch try await issuance.revoke(serial: serial, reason: reason, by: caller.identity) {
        case .revoked(let revoked), .alreadyRevoked(let revoked):
            return .ok(.init(body: .json(record(revoked, now: Date()))))
        case .expired(let expired):
            throw Problem(
                "certificate-expired", "Certificate expired", status: 409,
                detail:
                    "certificate \(serial) expired at \(expired.notAfter.formatted(.iso8601)); an expired certificate is trusted by nothing and is not revoked"
            )
        case .unknown:
            throw Problem(
                "not-found", "No such certificate", status: 404,
                detail: "no certificate with serial \(serial) was issued by this CA")
        }
    }

    public func getCertificate(_ input: Operations.GetCertificate.Input) async throws
        -> Operations.GetCertificate.Output
    {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        let serial = try serialParameter(input.path.serial)
        // Another tenant's certificate is answered as one that does not exist: its serial says nothing to this caller.
        guard let entry = try await issuance.certificate(serial: serial),
            try await managed.mayRead(requester: entry.requester, by: caller)
        else {
            throw Problem(
                "not-found", "No such certificate", status: 404,
                detail: "no certificate with serial \(serial) was issued by this CA")
        }
        let wantsPEM = input.headers.accept.sortedByQuality().first?.contentType == .applicationPemCertificateChain
        if wantsPEM {
            return .ok(.init(body: .applicationPemCertificateChain(HTTPBody(issuance.chainPEM(of: entry)))))
        }
        return .ok(.init(body: .json(record(entry, now: Date()))))
    }

    public func getIdentity(_ input: Operations.GetIdentity.Input) async throws -> Operations.GetIdentity.Output {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        let policy = caller.policy
        return .ok(
            .init(
                body: .json(
                    .init(
                        identity: caller.identity, allow: caller.mayIssue ? policy.allowedNames.map(\.description) : [],
                        profiles: CertificateProfile.requestable.filter(policy.allowedProfiles.contains).compactMap {
                            Components.Schemas.Profile(rawValue: $0.rawValue)
                        },
                        maxDuration: Lifetime.format(policy.maximumLifetime), auditor: caller.isAuditor,
                        administrator: caller.isAdministrator
                    ))))
    }

    public func getChainCRLs(_ input: Operations.GetChainCRLs.Input) async throws -> Operations.GetChainCRLs.Output {
        guard let chain = try await crl?.chain() else {
            throw Problem(
                "not-found", "No root CRL", status: 404,
                detail:
                    "the root's CRL is not configured (crl.rootCRL); without it no ca.crl is delivered, since half a chain's CRLs fails every client"
            )
        }
        return .ok(.init(body: .applicationXPemFile(HTTPBody(chain.pem))))
    }

    public func getCAChain(_ input: Operations.GetCAChain.Input) async throws -> Operations.GetCAChain.Output {
        .ok(.init(body: .applicationPemCertificateChain(HTTPBody(issuance.intermediatesPEM + issuance.rootPEM))))
    }

    public func health(_ input: Operations.Health.Input) async throws -> Operations.Health.Output {
        .ok(.init(body: .plainText("ok\n")))
    }

    public func ready(_ input: Operations.Ready.Input) async throws -> Operations.Ready.Output {
        let readiness = await readiness.value()
        return readiness.ready ? .ok(.init(body: .json(readiness))) : .serviceUnavailable(.init(body: .json(readiness)))
    }

    public func metrics(_ input: Operations.Metrics.Input) async throws -> Operations.Metrics.Output {
        .ok(.init(body: .plainText(HTTPBody(try await exposition.value().get()))))
    }

    /// A `dnsName` filter as the ledger keys names: lower case, addresses in their canonical form. It is a lookup,
    /// not a request for a certificate, so any text of the documented length is a key (one that matches nothing
    /// finds nothing).
    private func lookupKey(_ name: String) throws -> String {
        guard (1...HostnameRules.maximumLength).contains(name.count) else {
            throw Problem(
                "invalid-query", "Invalid query", status: 400,
                detail: "dnsName must be 1 to \(HostnameRules.maximumLength) characters")
        }
        return IPAddress(name)?.description ?? name.lowercased()
    }

    private func record(_ entry: CertificateEntry, now: Date) -> Components.Schemas.CertificateRecord {
        .init(
            serial: entry.serial,
            issuerKeyId: entry.issuerKeyID,
            subject: entry.subject,
            dnsNames: entry.dnsNames,
            ipAddresses: entry.ipAddresses,
            uris: entry.uris.isEmpty ? nil : entry.uris,
            profile: Components.Schemas.IssuedProfile(rawValue: entry.profile.rawValue) ?? .server,
            notBefore: entry.notBefore,
            notAfter: entry.notAfter,
            status: Components.Schemas.CertificateStatus(rawValue: entry.status(at: now).rawValue) ?? .valid,
            revokedAt: entry.revokedAt,
            revocationReason: entry.revocationReason,
            requester: entry.requester,
            issuedAt: entry.issuedAt,
            publicKeySHA256: entry.publicKeySHA256,
            csrSHA256: entry.csrSHA256,
            certificate: issuance.leafPEM(of: entry),
            signerKeyVersion: entry.signerKeyVersion,
            signerRequestId: entry.signerRequestID
        )
    }
}
