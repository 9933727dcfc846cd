import AsyncHTTPClient
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import OpenAPIHummingbird
import OpenAPIRuntime
import ServiceLifecycle
import SignetACME
import SignetAuthority
import SignetKeyVault
import SignetKeys
import SignetLedger
import SignetOpenAPI
import SignetPKCS11
import SwiftASN1
import UnixSignals
import X509

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Composes the service from its configuration: CA, signer, ledger, issuer, HTTP application. The one place
/// where parts are wired together.
public struct SignetServer: Sendable {
    public let configuration: ServerConfiguration
    public let ledger: any Ledger
    public let issuance: IssuanceService
    public let metrics: SignetMetrics
    public let authenticator: CallerAuthenticator
    public let managed: ManagedCertificates
    /// The ACME front end's registration authority; nil when no ACME directory is configured.
    public let acme: ACMEService?
    /// The issuing CA's CRL, kept fresh and served at /crl/.
    public let crl: CRLPublisher
    /// The OCSP responder at /ocsp.
    public let ocsp: OCSPResponder
    let clusters: ClusterConnections
    let signer: any CASigner
    /// The client a remote signer talks through; shut down with the server.
    let http: HTTPClient?
    let logger: Logger

    /// Opens the ledger and loads (or, on the embedded default, creates) the CA. Refuses to start on any CA check failure.
    public static func prepare(_ configuration: ServerConfiguration, logger: Logger) async throws -> SignetServer {
        try FileManager.default.createDirectory(
            atPath: configuration.dataDirectory, withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700])
        let directory = CADirectory(path: configuration.resolvedCADirectory)
        if !directory.exists {
            guard configuration.mayCreateDevelopmentCA else {
                throw ConfigurationError(
                    "no CA in \(directory.path): run 'signet ca init --dir \(directory.path)' or 'signet ca import'")
            }
            logger.warning(
                """
                ********************************************************************************
                DEVELOPMENT CA: no CA was configured, so a new root and intermediate were created
                in \(directory.path). Certificates it issues are trusted by nothing but its own
                root (\(directory.rootCertificate)). Do not use it in production: create or import
                a CA with 'signet ca init' / 'signet ca import' and set ca.directory.
                ********************************************************************************
                """)
            var initializer = CAInitializer()
            initializer.organization = "Signet Development"
            try await initializer.create(in: directory, overwrite: false)
        }
        let metrics = SignetMetrics(signerBackend: configuration.signerBackend)
        let (signer, http) = try await makeSigner(configuration, directory: directory, metrics: metrics, logger: logger)
        do {
            var custodyKey = signer.privateKey
            if let limits = configuration.signerLimits {
                // Admission wraps the remote key; the observer outside it times the remote call plus the wait for a turn.
                let admission = SignAdmission(limits: limits) { queued, running in
                    metrics.recordAdmission(queued: queued, running: running)
                }
                custodyKey = Certificate.PrivateKey(AdmittedPrivateKey(custodyKey, admission: admission))
            }
            let observed = Certificate.PrivateKey(
                ObservedPrivateKey(custodyKey) { seconds, failure in
                    metrics.recordSignature(seconds: seconds, failure: failure)
                })
            var ca = try await CALoader.load(from: directory, key: observed)
            if let base = configuration.crlBaseURL {
                ca.crlDistributionPoint = base + "/crl/\(ca.keyIdentifier.hexString).crl"
            }
            if let base = configuration.ocspBaseURL { ca.ocspResponderURL = base + "/ocsp" }
            let database = try configuration.ledgerDatabase()
            let ledger = try await database.open(
                key: try configuration.loadLedgerKey(), serving: true, logger: logger)
            if configuration.ledgerIsFile {
                let path = configuration.resolvedDatabasePath
                let files =
                    [configuration.dataDirectory, path, path + "-wal", path + "-shm"]
                    + (configuration.ledgerKey == nil ? [configuration.resolvedLedgerKeyFile] : [])
                for (path, mode) in LedgerFiles.widerThanOwner(files) {
                    logger.warning(
                        "readable by others than Signet's user: make it 0600 (files) or 0700 (directories)",
                        metadata: [
                            "path": "\(path)", "mode": "\(String(mode, radix: 8))",
                        ])
                }
            }
            logger.info(
                "CA loaded",
                metadata: [
                    "subject": "\(ca.certificate.subject)", "keyID": "\(ca.keyIdentifier.hexString)",
                    "notAfter": "\(ca.certificate.notValidAfter)", "ledger": "\(database)",
                    "durability": "\(configuration.durability.rawValue)",
                ])
            let crl = CRLPublisher(
                ca: ca, ledger: ledger, validity: configuration.crlValidity, rootCRLFile: configuration.rootCRLFile,
                metrics: metrics, logger: logger
            )
            do {
                if let root = try crl.rootCRL(), root.nextUpdate < Date() {
                    logger.error(
                        "the root's CRL (crl.rootCRL) is past its nextUpdate: clients that check the whole chain fail; make a new one with 'signet ca crl'"
                    )
                }
            } catch {
                logger.error(
                    "the root's CRL (crl.rootCRL) cannot be read; /readyz fails until it can",
                    metadata: ["error": "\(error)"])
            }
            let ocsp = try OCSPResponder(
                ca: ca, ledger: ledger, validity: configuration.ocspValidity,
                responderLifetime: configuration.ocspResponderLifetime, metrics: metrics,
                logger: logger
            )
            let issuance = try IssuanceService(
                ca: ca, ledger: ledger, metrics: metrics, logger: logger,
                reservedSubjects: Set(
                    configuration.clientCertificatePolicies.compactMap {
                        if case .subject(let subject) = $0.match { subject } else { nil }
                    }),
                signerDescription: configuration.signerDescription,
                onRevocation: { serial in
                    crl.revoked()
                    ocsp.revoked(serial: serial)
                }
            )
            let clusters = try await ClusterConnections.open(configuration.clusters, logger: logger)
            let serviceAccounts = configuration.serviceAccounts.flatMap { settings in
                clusters[settings.cluster].map {
                    ServiceAccountVerifier(settings: settings, client: $0.client, logger: logger)
                }
            }
            let authenticator = CallerAuthenticator(
                ledger: ledger, defaultLifetime: configuration.defaultLifetime,
                cacheLifetime: configuration.tokenCacheLifetime,
                certificatePolicies: try resolvingIssuers(configuration, ca: ca),
                serviceAccounts: serviceAccounts,
                failedAuthenticationsPerMinute: configuration.limits.failedAuthenticationsPerMinute,
                onRateLimited: { metrics.recordRateLimited("authentication") }
            )
            let managed = ManagedCertificates(
                ledger: ledger, issuance: issuance, clusters: clusters, authenticator: authenticator, metrics: metrics,
                logger: logger,
                forcedRenewalsPerHour: configuration.limits.forcedRenewalsPerHour,
                claimLease: configuration.renewalClaim,
                crlBundle: { await crl.bundle() }
            )
            crl.onPublish { adopted in
                if adopted { ocsp.forgetCachedAnswers() }
                await managed.refreshCRLs()
            }
            var acme: ACMEService?
            if !configuration.acme.directories.isEmpty {
                acme = ACMEService(
                    settings: configuration.acme, store: ledger, issuance: issuance, limits: configuration.limits,
                    logger: logger)
                for directory in configuration.acme.directories {
                    logger.info(
                        "ACME directory",
                        metadata: [
                            "url": "\(configuration.acmeBaseURL)/acme/\(directory.name)/directory",
                            "allow": "\(directory.allowedNames)",
                            "challenges": "\(directory.challenges.map(\.rawValue))",
                            "externalAccountRequired": "\(directory.externalAccountRequired)",
                            "trustedNames": "\(directory.trustedNames)",
                        ])
                    if directory.alwaysValid {
                        logger.warning(
                            "ACME directory '\(directory.name)' passes every challenge without validating it (alwaysValid): for tests and benchmarks only"
                        )
                    }
                }
            }
            return SignetServer(
                configuration: configuration, ledger: ledger, issuance: issuance, metrics: metrics,
                authenticator: authenticator,
                managed: managed, acme: acme, crl: crl, ocsp: ocsp, clusters: clusters, signer: signer, http: http,
                logger: logger
            )
        } catch {
            // A CA that fails its checks stops the start; the remote signer's client is closed first.
            try? await http?.shutdown()
            throw error
        }
    }

    /// The CA key's custody: Key Vault or a PKCS#11 token when configured, otherwise the key file of the CA directory.
    private static func makeSigner(
        _ configuration: ServerConfiguration, directory: CADirectory, metrics: SignetMetrics, logger: Logger
    ) async throws -> (any CASigner, HTTPClient?) {
        if let token = configuration.pkcs11 {
            let signer = try await PKCS11Signer.connect(
                module: token.module,
                key: PKCS11KeyReference(
                    tokenLabel: token.tokenLabel, keyLabel: token.keyLabel,
                    keyID: token.keyID.flatMap(PKCS11KeyReference.keyID(hex:))),
                pin: try token.readPIN(),
                sessions: token.limits.maximumConcurrent
            )
            logger.info(
                "CA key on a PKCS#11 token", metadata: ["key": "\(signer.reference.uri)", "module": "\(token.module)"])
            if signer.keyIsExportable {
                logger.warning(
                    "the CA key on the token can be exported (CKA_EXTRACTABLE or not CKA_SENSITIVE); generate CA keys non-extractable"
                )
            }
            return (signer, nil)
        }
        guard let vault = configuration.keyVault else {
            let passphrase =
                try configuration.caPassphrase.map { Array($0.utf8) }
                ?? configuration.caPassphraseFile.map { try PassphraseFile.read($0) }
            return (try FileKeySigner(path: directory.key, passphrase: passphrase), nil)
        }
        let (client, http) = try KeyVaultConnection.open(
            vaultURL: vault.url, apiVersion: vault.apiVersion, caFile: vault.caFile,
            maximumConnections: vault.limits.maximumConcurrent,
            observer: { event in
                switch event {
                case .throttled: metrics.recordThrottledResponse()
                case .retried(let reason): metrics.recordRetry(reason: reason)
                }
            },
            logger: logger
        )
        do {
            let signer = try await KeyVaultSigner.connect(
                client: client, keyName: vault.keyName, keyVersion: vault.keyVersion)
            logger.info(
                "CA key in Azure Key Vault",
                metadata: [
                    "kid": "\(signer.keyID)", "auth": "\(client.credential.flow)",
                    "pinned": "\(vault.keyVersion != nil)",
                ])
            return (signer, http)
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    public func makeRouter() throws -> Router<SignetRequestContext> {
        let router = Router(context: SignetRequestContext.self)
        router.add(middleware: APIEdgeMiddleware())
        let api = SignetAPI(
            issuance: issuance, ledger: ledger, authenticator: authenticator, metrics: metrics, signer: signer,
            managed: managed,
            limits: configuration.limits, signerDescription: configuration.signerDescription, crl: crl,
            crlReadinessMargin: configuration.crlReadinessMargin, ocsp: ocsp,
            logger: logger
        )
        // Compact JSON without escaped slashes (PEM is full of them): the default pretty-printed, key-sorted output
        // costs measurable time at thousands of answers a second.
        try api.registerHandlers(
            on: router,
            configuration: .init(
                dateTranscoder: RFC3339DateTranscoder(), jsonEncodingOptions: [.withoutEscapingSlashes]))
        CRLFrontEnd(publisher: crl).register(on: router)
        OCSPFrontEnd(responder: ocsp, metrics: metrics).register(on: router)
        if let acme {
            ACMEFrontEnd(
                service: acme, store: ledger, baseURL: configuration.acmeBaseURL,
                cacheLifetime: configuration.tokenCacheLifetime
            )
            .register(on: router)
        }
        return router
    }

    /// The HTTP application, and the services that must run beside it. `onServerRunning` receives the listening
    /// channel (tests bind port 0 and read it).
    public func makeApplication(onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in })
        async throws -> some ApplicationProtocol
    {
        let server: HTTPServerBuilder
        var services: [any Service] = [
            RenewalScheduler(managed: managed, concurrency: configuration.renewalConcurrency, logger: logger),
            DeliveredSecretWatch(ledger: ledger, clusters: clusters, logger: logger),
        ]
        if let acme { services.append(ACMEMaintenance(service: acme, logger: logger)) }
        services.append(CRLPublisher.Loop(publisher: crl))
        switch configuration.transport {
        case .http:
            logger.warning("serving plain HTTP: tokens and keys cross the network unencrypted")
            server = .http1()
        case .https:
            let (tls, identity) = try await tlsConfiguration()
            if let identity { services.append(ServerIdentity.Renewal(identity: identity, logger: logger)) }
            server = try .tls(.http1(), tlsConfiguration: tls)
        }
        return Application(
            router: try makeRouter(),
            server: server,
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port), serverName: "signet"),
            services: services,
            onServerRunning: onServerRunning,
            logger: logger
        )
    }

    /// Serves until SIGTERM or SIGINT, then stops accepting, finishes in-flight requests and closes the ledger.
    public func run() async throws {
        let app = try await makeApplication { channel in
            logger.info(
                "listening",
                metadata: [
                    "address": "\(channel.localAddress.map { "\($0)" } ?? "?")",
                    "transport": "\(configuration.transport.rawValue)",
                ])
        }
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        await clusters.shutdown()
        await acme?.shutdown()
        try await http?.shutdown()
        try await ledger.close()
        logger.info("stopped; ledger closed")
    }

    /// The server's TLS configuration: the configured certificate and key, or a certificate Signet issues to
    /// itself for the configured host names (recorded in the ledger like any other) and renews while it runs.
    func tlsConfiguration() async throws -> (TLSConfiguration, ServerIdentity?) {
        var tls: TLSConfiguration
        var identity: ServerIdentity?
        if let certificatePath = configuration.tlsCertificate, let keyPath = configuration.tlsKey {
            tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificatePath).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: keyPath, format: .pem))
            )
        } else {
            let own = try await ServerIdentity { try await self.issueServerCertificate() }
            let initial = own.credentials
            tls = TLSConfiguration.makeServerConfiguration(certificateChain: initial.chain, privateKey: initial.key)
            tls.sslContextCallback = { _, promise in promise.succeed(own.handshakeOverride) }
            identity = own
        }
        // TLS 1.2 and 1.3 only: older versions have no cipher suite worth offering.
        tls.minimumTLSVersion = .tlsv12
        switch configuration.clientAuthentication {
        case .none:
            tls.certificateVerification = .none
        case .optional, .require:
            tls.trustRoots = .certificates(try clientTrustAnchors())
            tls.certificateVerification =
                configuration.clientAuthentication == .require ? .noHostnameVerification : .optionalVerification
        }
        return (tls, identity)
    }

    /// The client-certificate identities with the key of the CA each names (`issuer`): exactly one CA of the client
    /// trust anchors (and of Signet's own chain, when self-issued clients are allowed) must carry that name.
    static func resolvingIssuers(_ configuration: ServerConfiguration, ca: IssuingCA) throws
        -> [ClientCertificatePolicy]
    {
        let policies = configuration.clientCertificatePolicies
        guard configuration.clientAuthentication != .none, !policies.isEmpty,
            configuration.clientCA != nil || configuration.allowSelfIssuedClients
        else {
            // nothing authenticates by certificate, or the start fails on tls.clientCA (clientTrustAnchors)
            return policies
        }
        var anchors = try configuration.clientCA.map { try PEMFiles.certificates(at: $0) } ?? []
        if configuration.allowSelfIssuedClients { anchors += ca.chainAboveLeaf + [ca.root] }
        return try policies.enumerated().map { index, policy in
            let keys = Set(
                anchors.filter { DistinguishedNames.normalized($0.subject.description) == policy.issuer }.map(
                    \.publicKey))
            guard keys.count == 1, let key = keys.first else {
                throw ConfigurationError(
                    keys.isEmpty
                        ? "clientCertificates[\(index)].issuer '\(policy.issuer)' names no CA of tls.clientCA"
                        : "clientCertificates[\(index)].issuer '\(policy.issuer)' names \(keys.count) CAs with different keys in tls.clientCA; give each CA its own name"
                )
            }
            var resolved = policy
            resolved.issuerKey = key
            return resolved
        }
    }

    /// Who may sign client certificates that authenticate to Signet: a CA of the operator's own (`tls.clientCA`), never
    /// Signet's issuing chain, through which every tenant allowed a name could mint a certificate bearing it. Only
    /// `tls.allowSelfIssuedClients: true` accepts Signet's chain, with a warning.
    func clientTrustAnchors() throws -> [NIOSSLCertificate] {
        let issuing = issuance.ca.chainAboveLeaf + [issuance.ca.root]
        guard let path = configuration.clientCA else {
            guard configuration.allowSelfIssuedClients else {
                throw ConfigurationError(
                    """
                    tls.clientAuth is \(configuration.clientAuthentication.rawValue) but tls.clientCA is not set: client certificates must come \
                    from a CA of your own, not from Signet's issuing chain (any caller allowed a name could be issued a certificate with \
                    that subject); set tls.clientCA, or tls.allowSelfIssuedClients: true to accept Signet's own certificates knowingly
                    """)
            }
            logger.warning(
                "client certificates issued by Signet's own CA authenticate callers (tls.allowSelfIssuedClients); subjects reserved from issuance: \(issuance.reservedSubjects.sorted())"
            )
            return try NIOSSLCertificate.fromPEMBytes(Array(issuance.rootPEM.utf8))
        }
        let bundle: [NIOSSLCertificate]
        do {
            bundle = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw ConfigurationError("tls.clientCA: cannot read \(path): \(error)")
        }
        for anchor in bundle {
            let certificate = try Certificate(derEncoded: try anchor.toDERBytes())
            guard let own = issuing.first(where: { $0.publicKey == certificate.publicKey }) else { continue }
            guard configuration.allowSelfIssuedClients else {
                throw ConfigurationError(
                    """
                    tls.clientCA (\(path)) holds Signet's own issuing CA '\(own.subject)': any caller allowed a name could be issued a client \
                    certificate with that subject; use a separate CA for client identities, or set tls.allowSelfIssuedClients: true knowingly
                    """)
            }
            logger.warning(
                "tls.clientCA holds Signet's own issuing CA (tls.allowSelfIssuedClients); subjects reserved from issuance: \(issuance.reservedSubjects.sorted())"
            )
        }
        return bundle
    }

    private func issueServerCertificate() async throws -> ServerIdentity.Credentials {
        let (_, keyPEM, csrPEM) = try KeyAlgorithm.ecdsaP256.generateWithRequest()
        let names = configuration.tlsHostnames
        let dnsNames = names.filter { IPAddress($0) == nil }
        let ipAddresses = names.filter { IPAddress($0) != nil }
        let lifetime = min(configuration.maximumLifetime, .seconds(30 * 86_400))
        let selfCaller = Caller(
            identity: "signet:server",
            policy: IssuancePolicy(
                allowedNames: try names.map { try NamePattern($0) }, maximumLifetime: lifetime,
                defaultLifetime: lifetime)
        )
        let issued = try await issuance.issue(
            IssuanceRequest(csrPEM: csrPEM, dnsNames: dnsNames, ipAddresses: ipAddresses, profile: .server),
            for: selfCaller
        )
        logger.info(
            "issued the server's own TLS certificate",
            metadata: [
                "serial": "\(issued.entry.serial)", "names": "\(names)", "renewAfter": "\(issued.renewAfter)",
            ])
        return ServerIdentity.Credentials(
            chain: try NIOSSLCertificate.fromPEMBytes(Array(issued.chainPEM.utf8)).map { .certificate($0) },
            key: .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)),
            serial: issued.entry.serial,
            renewAfter: issued.renewAfter
        )
    }
}

public enum PassphraseFile {
    /// The passphrase is the file's first line (a trailing newline is not part of it).
    public static func read(_ path: String) throws -> [UInt8] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return Array((text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "").utf8)
    }
}
