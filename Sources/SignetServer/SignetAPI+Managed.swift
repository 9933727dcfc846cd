import OpenAPIRuntime
import SignetAuthority
import SignetKeys
import SignetLedger
import SignetManaged
import SignetOpenAPI

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The managed-certificate handlers: the wire shapes in and out; the rules are `ManagedCertificates`'.
extension SignetAPI {
    public func createManagedCertificate(_ input: Operations.CreateManagedCertificate.Input) async throws
        -> Operations.CreateManagedCertificate.Output
    {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        guard caller.mayIssue else { throw AuthorizationError.readOnly(caller.identity) }
        guard case .json(let body) = input.body else {
            throw Problem("unsupported-media-type", "Unsupported media type", status: 415)
        }
        var spec = ManagedCertificateSpec(
            dnsNames: body.dnsNames ?? [], ipAddresses: body.ipAddresses ?? [],
            profile: body.profile.flatMap { CertificateProfile(rawValue: $0.rawValue) } ?? .server,
            keyAlgorithm: try Self.keyAlgorithm(body.privateKey),
            durationSeconds: try body.duration.map { try Self.seconds($0, "duration") }
                ?? caller.policy.defaultLifetime.components.seconds,
            renewBeforeSeconds: try body.renewBefore.map { try Self.seconds($0, "renewBefore") },
            renewBeforePercentage: body.renewBeforePercentage,
            target: DeliveryTarget(
                cluster: body.target.cluster, namespace: body.target.namespace, secretName: body.target.secretName),
            secretLabels: body.secretTemplate?.labels?.additionalProperties ?? [:],
            secretAnnotations: body.secretTemplate?.annotations?.additionalProperties ?? [:],
            adopt: body.adopt ?? false
        )
        spec.additionalOutputFormats = body.additionalOutputFormats.map {
            $0.compactMap { OutputFormat(rawValue: $0.rawValue) }
        }
        spec.pkcs12Password = Self.reference(body.keystores)
        spec.caCRL = body.caCRL
        let record = try await managed.register(name: body.name, spec: spec, by: caller)
        return .created(
            .init(
                headers: .init(location: "/v1/managed-certificates/\(record.name)"),
                body: .json(Self.wire(record, now: Date()))))
    }

    public func listManagedCertificates(_ input: Operations.ListManagedCertificates.Input) async throws
        -> Operations.ListManagedCertificates.Output
    {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        let limit = input.query.limit ?? 100
        guard (1...1000).contains(limit) else {
            throw Problem("invalid-query", "Invalid query", status: 400, detail: "limit must be between 1 and 1000")
        }
        if let cursor = input.query.cursor, !(1...256).contains(cursor.count) {
            throw Problem(
                "invalid-query", "Invalid query", status: 400,
                detail: "cursor must be 1 to 256 characters (a nextCursor)")
        }
        let records = try await ledger.managedCertificates(after: input.query.cursor, limit: limit + 1)
        let page = records.prefix(limit)
        let now = Date()
        return .ok(
            .init(
                body: .json(
                    .init(
                        // Pages count the records in name order, so a tenant's page can be shorter than the limit.
                        items: page.filter { managed.readable($0, by: caller) }.map { Self.wire($0, now: now) },
                        nextCursor: records.count > limit ? page.last?.name : nil
                    ))))
    }

    public func getManagedCertificate(_ input: Operations.GetManagedCertificate.Input) async throws
        -> Operations.GetManagedCertificate.Output
    {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        let record = try await managed.record(named: input.path.name)
        guard managed.readable(record, by: caller) else { throw LedgerError.noSuchManagedCertificate(input.path.name) }
        return .ok(.init(body: .json(Self.wire(record, now: Date()))))
    }

    public func updateManagedCertificate(_ input: Operations.UpdateManagedCertificate.Input) async throws
        -> Operations.UpdateManagedCertificate.Output
    {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        let patch: Components.Schemas.ManagedCertificatePatch
        switch input.body {
        case .json(let body), .applicationMergePatchJson(let body): patch = body
        }
        // An unknown name is 404 whatever the body; then every value is parsed before the record is touched, so a
        // malformed value changes nothing.
        _ = try await managed.record(named: input.path.name)
        let algorithm = try patch.privateKey.map { try Self.keyAlgorithm($0) }
        let duration = try patch.duration.map { try Self.seconds($0, "duration") }
        let renewBefore = try patch.renewBefore.map { try Self.seconds($0, "renewBefore") }
        let record = try await managed.update(name: input.path.name, by: caller) { spec in
            if let names = patch.dnsNames { spec.dnsNames = names }
            if let addresses = patch.ipAddresses { spec.ipAddresses = addresses }
            if let profile = patch.profile {
                spec.profile = CertificateProfile(rawValue: profile.rawValue) ?? spec.profile
            }
            if let algorithm { spec.keyAlgorithm = algorithm }
            if let duration { spec.durationSeconds = duration }
            if let renewBefore {
                spec.renewBeforeSeconds = renewBefore
                spec.renewBeforePercentage = nil
            }
            if let percentage = patch.renewBeforePercentage {
                spec.renewBeforePercentage = percentage
                spec.renewBeforeSeconds = nil
            }
            if let target = patch.target {
                spec.target = DeliveryTarget(
                    cluster: target.cluster, namespace: target.namespace, secretName: target.secretName)
            }
            if let template = patch.secretTemplate {
                spec.secretLabels = template.labels?.additionalProperties ?? [:]
                spec.secretAnnotations = template.annotations?.additionalProperties ?? [:]
            }
            if let adopt = patch.adopt { spec.adopt = adopt }
            if let caCRL = patch.caCRL { spec.caCRL = caCRL }
            if let formats = patch.additionalOutputFormats {
                spec.additionalOutputFormats = formats.compactMap { OutputFormat(rawValue: $0.rawValue) }
            }
            if let keystores = patch.keystores { spec.pkcs12Password = Self.reference(keystores) }
        }
        return .ok(.init(body: .json(Self.wire(record, now: Date()))))
    }

    public func deleteManagedCertificate(_ input: Operations.DeleteManagedCertificate.Input) async throws
        -> Operations.DeleteManagedCertificate.Output
    {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        try await managed.delete(name: input.path.name, by: caller)
        return .noContent(.init())
    }

    public func renewManagedCertificate(_ input: Operations.RenewManagedCertificate.Input) async throws
        -> Operations.RenewManagedCertificate.Output
    {
        let caller = try await authenticator.authenticate(PresentedCredentials.current)
        let record = try await managed.renewNow(name: input.path.name, by: caller)
        return .accepted(.init(body: .json(Self.wire(record, now: Date()))))
    }

    // MARK: Wire shapes

    /// cert-manager's `privateKey` shape to Signet's key algorithms.
    static func keyAlgorithm(_ spec: Components.Schemas.PrivateKeySpec?) throws -> KeyAlgorithm {
        let algorithm = (spec?.algorithm ?? .ecdsa).rawValue
        guard let chosen = KeyAlgorithm(algorithm: algorithm, size: spec?.size?.rawValue) else {
            throw ManagedCertificateRefusal.invalid(
                "privateKey \(algorithm) size \(spec?.size.map { String($0.rawValue) } ?? "-") is not offered; use \(KeyAlgorithm.offeredKeys)"
            )
        }
        return chosen
    }

    static func reference(_ keystores: Components.Schemas.Keystores?) -> SecretKeyReference? {
        keystores?.pkcs12.map { SecretKeyReference(name: $0.passwordSecretRef.name, key: $0.passwordSecretRef.key) }
    }

    static func privateKeySpec(_ algorithm: KeyAlgorithm) -> Components.Schemas.PrivateKeySpec {
        let form = algorithm.algorithmAndSize
        return .init(
            algorithm: .init(rawValue: form.algorithm),
            size: form.size.flatMap(Components.Schemas.PrivateKeySpec.SizePayload.init(rawValue:)))
    }

    static func seconds(_ text: String, _ field: String) throws -> Int64 {
        do {
            return try Lifetime.parse(text).components.seconds
        } catch {
            throw ManagedCertificateRefusal.invalid("\(field): \(error)")
        }
    }

    static func wire(_ record: ManagedCertificateRecord, now: Date) -> Components.Schemas.ManagedCertificate {
        let spec = record.spec
        let state = ManagedCertificateStatus(record, now: now)
        let template: Components.Schemas.SecretTemplate? =
            spec.secretLabels.isEmpty && spec.secretAnnotations.isEmpty
            ? nil
            : .init(
                labels: .init(additionalProperties: spec.secretLabels),
                annotations: .init(additionalProperties: spec.secretAnnotations)
            )
        return .init(
            name: record.name, owner: record.owner, generation: record.generation, createdAt: record.createdAt,
            updatedAt: record.updatedAt,
            dnsNames: spec.dnsNames, ipAddresses: spec.ipAddresses,
            profile: Components.Schemas.Profile(rawValue: spec.profile.rawValue) ?? .server,
            privateKey: privateKeySpec(spec.keyAlgorithm),
            duration: Lifetime.format(spec.lifetime),
            renewBefore: spec.renewBeforeSeconds.map { Lifetime.format(.seconds($0)) },
            renewBeforePercentage: spec.renewBeforePercentage,
            target: .init(
                cluster: spec.target.cluster, namespace: spec.target.namespace, secretName: spec.target.secretName),
            secretTemplate: template,
            adopt: spec.adopt,
            caCRL: spec.deliversCRL,
            additionalOutputFormats: spec.additionalOutputFormats.map {
                $0.compactMap { .init(rawValue: $0.rawValue) }
            },
            keystores: spec.pkcs12Password.map {
                .init(pkcs12: .init(passwordSecretRef: .init(name: $0.name, key: $0.key)))
            },
            status: .init(
                ready: state.ready, reason: state.reason, serial: record.delivered?.serial,
                notBefore: record.delivered?.notBefore, notAfter: record.delivered?.notAfter,
                renewalTime: record.delivered?.renewalTime,
                nextAttemptTime: record.nextAttemptAt, attempts: record.attempts, lastError: record.lastError,
                lastAttemptTime: record.lastAttemptAt, deliveredAt: record.delivered?.deliveredAt,
                secretResourceVersion: record.delivered?.secretResourceVersion,
                observedGeneration: record.delivered?.generation,
                probe: record.probe.map { probe in
                    .init(
                        time: probe.at, servedSerial: probe.servedSerial,
                        matches: probe.servedSerial != nil && probe.servedSerial == record.delivered?.serial,
                        error: probe.error)
                }
            )
        )
    }
}
