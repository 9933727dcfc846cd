import Logging
import SignetAuthority
import SignetDelivery
import SignetKeys
import SignetKubernetes
import SignetLedger
import SignetManaged
import SignetRenewal
import SwiftASN1
import Synchronization
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension ManagedCertificates {
    /// After a CRL is published: every managed certificate whose Secret carries `ca.crl` gets the new one, written
    /// through the same owner-checked, conflict-safe path as certificates (nothing is issued). Refreshes are serialized
    /// and coalesced (see `crlRefresh`), so the last one written is always the newest CRL.
    public func refreshCRLs() async {
        let first = crlRefresh.withLock { state in
            if state.running {
                state.again = true
                return false
            }
            state.running = true
            return true
        }
        guard first else { return }
        repeat {
            await refreshCRLsOnce()
        } while crlRefresh.withLock { state in
            guard state.again else {
                state.running = false
                return false
            }
            state.again = false
            return true
        }
    }

    private func refreshCRLsOnce() async {
        guard let bundle = await crlBundle() else { return }
        do {
            for record in try await ledger.managedCertificates()
            where record.spec.deliversCRL && record.delivered != nil {
                guard let cluster = clusters[record.spec.target.cluster] else { continue }
                let target = record.spec.target
                do {
                    if try await SecretDelivery(client: cluster.client, logger: logger).refreshCRL(
                        bundle, namespace: target.namespace, name: target.secretName,
                        owner: ManagedCertificateRecord.secretOwner(for: record.name)
                    ) {
                        logger.info("ca.crl refreshed", metadata: ["name": "\(record.name)", "target": "\(target)"])
                    }
                } catch {
                    logger.warning(
                        "could not refresh ca.crl; the next CRL tries again",
                        metadata: ["name": "\(record.name)", "error": "\(error)"])
                }
            }
        } catch {
            logger.error("could not list managed certificates to refresh ca.crl", metadata: ["error": "\(error)"])
        }
    }

    /// Due renewals, claimed for this replica (see `ManagedCertificateStore.claimDueManagedCertificates`).
    func claimDue(limit: Int) async throws -> [ManagedCertificateRecord] {
        let now = now()
        return try await ledger.claimDueManagedCertificates(
            at: now, until: now.addingTimeInterval(claimLease.timeInterval), limit: limit)
    }

    /// One renewal, from a fresh key to the Secret written and the ledger updated; a failure is recorded and
    /// retried with backoff. Afterwards the gateway is probed, if one is configured for the cluster.
    /// Gives a claim back unused, so that it is claimable at once.
    func releaseClaim(_ name: String) async {
        try? await ledger.extendClaim(name: name, until: now())
    }

    func renew(_ record: ManagedCertificateRecord) async {
        let started = now()
        // The claim is kept while this replica works; if it dies, the claim lapses and another replica resumes.
        let heartbeat = Task { [ledger, claimLease, now] in
            while !Task.isCancelled {
                try? await Task.sleep(for: claimLease / 3)
                guard !Task.isCancelled else { break }
                try? await ledger.extendClaim(
                    name: record.name, until: now().addingTimeInterval(claimLease.timeInterval))
            }
        }
        defer { heartbeat.cancel() }
        if record.lastErrorReason == Self.revokedReason, let client = clusters[record.spec.target.cluster]?.client {
            // The ledger made this renewal due when the current certificate was revoked; the Secret's readers learn why.
            let target = record.spec.target
            if let secret = try? await client.getSecret(namespace: target.namespace, name: target.secretName) {
                try? await client.recordEvent(
                    regarding: secret, type: "Warning", reason: Self.revokedReason, action: "Renew",
                    note: "managed certificate \(record.name): \(record.lastError ?? "its certificate was revoked")")
            }
        }
        do {
            let delivered = try await attempt(record, at: started)
            metrics.recordRenewal(.delivered)
            logger.info(
                "managed certificate delivered",
                metadata: [
                    "name": "\(record.name)", "serial": "\(delivered.serial)", "target": "\(record.spec.target)",
                    "renewalTime": "\(delivered.renewalTime.formatted(.iso8601))",
                ])
            if let gateway = clusters[record.spec.target.cluster]?.settings.gateway {
                await probe(record, serial: delivered.serial, gateway: gateway)
            }
        } catch let refusal as RenewalUnauthorized {
            await refuse(record, refusal, at: started)
        } catch {
            metrics.recordRenewal(.failed)
            let failures = record.attempts + 1
            let retryAt = now().addingTimeInterval(
                RenewalSchedule.retryDelay(afterFailures: failures, jitter: .random(in: 0..<1)).timeInterval)
            logger.warning(
                "managed certificate not delivered; will retry",
                metadata: [
                    "name": "\(record.name)", "target": "\(record.spec.target)", "attempts": "\(failures)",
                    "retryAt": "\(retryAt.formatted(.iso8601))", "error": "\(error)",
                ])
            do {
                try await ledger.failRenewal(name: record.name, error: "\(error)", at: started, retryAt: retryAt)
            } catch {
                logger.error(
                    "could not record a failed renewal", metadata: ["name": "\(record.name)", "error": "\(error)"])
            }
        }
    }

    /// `last_error_reason` of a managed certificate whose current certificate was revoked (set by the ledger).
    static let revokedReason = "Revoked"

    /// The owner's credential, as it is now, must still allow the certificate: a revoked token or a narrowed policy
    /// stops its renewals. Nothing is issued; the status says `Unauthorized`, an Event on the Secret and a metric say
    /// so once, and the normal backoff retries, so renewals resume by themselves once the owner is allowed again.
    private func authorize(_ record: ManagedCertificateRecord) async throws {
        let policy = try await authenticator.currentPolicy(of: record.owner)
        if let refusal = ManagedCertificateRules.policyRefusal(record.spec, policy: policy) {
            throw RenewalUnauthorized("\(record.owner): \(refusal)")
        }
    }

    private func refuse(_ record: ManagedCertificateRecord, _ refusal: RenewalUnauthorized, at started: Date) async {
        metrics.recordRenewal(.unauthorized)
        let retryAt = now().addingTimeInterval(
            RenewalSchedule.retryDelay(afterFailures: record.attempts + 1, jitter: .random(in: 0..<1)).timeInterval)
        let reason = "renewal not authorized: \(refusal.description)"
        logger.warning(
            "managed certificate not renewed: its owner is no longer allowed it",
            metadata: [
                "name": "\(record.name)", "owner": "\(record.owner)", "reason": "\(refusal.description)",
                "retryAt": "\(retryAt.formatted(.iso8601))",
            ])
        let firstTime = record.lastErrorReason != RenewalUnauthorized.reason
        do {
            try await ledger.failRenewal(
                name: record.name, error: reason, reason: RenewalUnauthorized.reason, at: started, retryAt: retryAt,
                event: firstTime
                    ? AuditEvent(
                        at: started, actor: "signet", action: "managed.renew", outcome: .refused, subject: record.name,
                        names: record.spec.dnsNames + record.spec.ipAddresses, reason: reason) : nil
            )
        } catch {
            logger.error(
                "could not record a refused renewal", metadata: ["name": "\(record.name)", "error": "\(error)"])
        }
        guard firstTime, let client = clusters[record.spec.target.cluster]?.client else { return }
        let target = record.spec.target
        let secret =
            (try? await client.getSecret(namespace: target.namespace, name: target.secretName))
            ?? KubernetesObject(
                .object([
                    "kind": .string("Secret"),
                    "metadata": .object(["name": .string(target.secretName), "namespace": .string(target.namespace)]),
                ]))
        try? await client.recordEvent(
            regarding: secret, type: "Warning", reason: RenewalUnauthorized.reason, action: "Renew",
            note: "managed certificate \(record.name) was not renewed: \(refusal.description)")
    }

    /// One attempt through the renewal engine, with the ledger as its state store and the issuance service as its
    /// source; returns what the ledger now records as delivered.
    private func attempt(_ record: ManagedCertificateRecord, at start: Date) async throws
        -> ManagedCertificateRecord.Delivered
    {
        let spec = record.spec
        guard let cluster = clusters[spec.target.cluster] else {
            throw RenewalFailure("cluster '\(spec.target.cluster)' is no longer configured")
        }
        try await authorize(record)

        var template = SecretTemplate(
            labels: spec.secretLabels, annotations: spec.secretAnnotations,
            outputFormats: spec.additionalOutputFormats ?? [])
        if let reference = spec.pkcs12Password {
            template.pkcs12Password = try await readPassword(
                reference, namespace: spec.target.namespace, client: cluster.client)
        }
        if spec.deliversCRL {
            if let bundle = await crlBundle() {
                template.caCRL = Array(bundle.utf8)
            } else {
                logger.warning(
                    "ca.crl not written: the root's CRL is not configured (crl.rootCRL), and a chain missing one fails every client",
                    metadata: ["name": "\(record.name)"])
            }
        }
        let job = RenewalJob(
            names: RenewalJob.canonicalNames(dnsNames: spec.dnsNames, ipAddresses: spec.ipAddresses),
            keyAlgorithm: spec.keyAlgorithm, namespace: spec.target.namespace, secretName: spec.target.secretName,
            owner: ManagedCertificateRecord.secretOwner(for: record.name), adopt: spec.adopt,
            deliveredSerial: record.delivered?.serial, template: template, root: issuance.ca.root,
            renewalTime: { leaf in
                RenewalSchedule.renewalTime(
                    notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter, renewBefore: spec.renewBefore,
                    jitter: .random(in: 0..<1))
            }
        )
        let state = ManagedRenewalState(ledger: ledger, record: record, startedAt: start)
        let source = IssuanceServiceSource(
            issuance: issuance, ledger: ledger, record: record, startedAt: start, now: now)
        let completed = try await RenewalEngine(client: cluster.client, logger: logger, now: now)
            .renew(job, state: state, source: source)
        if let written = template.caCRL, let newest = await crlBundle(), Array(newest.utf8) != written {
            // A CRL was published while this renewal ran (a revocation's usually is: the revocation is what made it
            // due), and its refresh may have reached the Secret before this write did; bring it up to date again.
            await refreshCRLs()
        }
        return state.delivered(completed)
    }

    /// The keystore password: the bytes of one key of a Secret beside the target, as cert-manager reads it.
    private func readPassword(_ reference: SecretKeyReference, namespace: String, client: KubernetesClient) async throws
        -> String
    {
        guard let secret = try await client.getSecret(namespace: namespace, name: reference.name) else {
            throw RenewalFailure("the PKCS#12 password Secret \(namespace)/\(reference.name) does not exist")
        }
        guard let bytes = secret.data[reference.key], let password = String(bytes: bytes, encoding: .utf8),
            !password.isEmpty
        else {
            throw RenewalFailure(
                "the PKCS#12 password Secret \(namespace)/\(reference.name) has no non-empty key '\(reference.key)'")
        }
        return password
    }

    /// Watches the gateway for the delivered serial: gateways pick Secrets up within seconds (Istio's SDS), so it is
    /// asked every two seconds for `probeWindow`; the last observation is recorded either way.
    private func probe(_ record: ManagedCertificateRecord, serial: String, gateway: String) async {
        guard let (host, port) = HostPort.split(gateway),
            let serverName = record.spec.dnsNames.first ?? record.spec.ipAddresses.first
        else { return }
        let deadline = ContinuousClock.now + probeWindow
        var observation = ManagedCertificateRecord.Probe(at: now(), servedSerial: nil, error: "not probed")
        while !Task.isCancelled {
            do {
                let served = try await DeliveryProbe.servedSerial(host: host, port: port, serverName: serverName)
                observation = .init(
                    at: now(), servedSerial: served,
                    error: served == serial ? nil : "the gateway still serves \(served)")
            } catch {
                observation = .init(at: now(), servedSerial: nil, error: "\(error)")
            }
            if observation.servedSerial == serial || ContinuousClock.now >= deadline { break }
            try? await Task.sleep(for: .seconds(2))
        }
        metrics.recordProbe(matched: observation.servedSerial == serial)
        if observation.servedSerial != serial {
            logger.warning(
                "the gateway does not serve the delivered certificate",
                metadata: [
                    "name": "\(record.name)", "gateway": "\(gateway)", "serial": "\(serial)",
                    "observed": "\(observation.error ?? "")",
                ])
        }
        try? await ledger.recordProbe(name: record.name, deliveredSerial: serial, probe: observation)
    }
}

/// The owner's current credential does not allow the renewal (revoked, or its policy narrowed).
struct RenewalUnauthorized: Error, CustomStringConvertible {
    static let reason = "Unauthorized"
    let description: String
    init(_ description: String) { self.description = description }
}

/// A renewal that cannot proceed for a reason of Signet's own (not the signer's, not the API server's).
struct RenewalFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
