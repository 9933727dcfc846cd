import SignetACME
import SignetAuthority
import SignetKeys
import SignetKubernetes
import SignetLedger
import Yams

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `signet serve`'s settings: a YAML file (all keys optional), then `SIGNET_*` environment variables on top.
/// With neither, Signet keeps its data in `./signet-data`, creates a development CA there on first start, and
/// listens for HTTPS on 127.0.0.1:8443.
public struct ServerConfiguration: Sendable, Equatable {
    public enum Transport: String, Sendable, Codable { case https, http }
    public enum ClientAuthentication: String, Sendable, Codable { case none, optional, require }

    public var host = "127.0.0.1"
    public var port = 8443
    public var dataDirectory = "./signet-data"
    public var databasePath: String?
    /// The key that seals private keys in the ledger (`ledgerKeyFile` / SIGNET_LEDGER_KEY_FILE), or the key itself
    /// (SIGNET_LEDGER_KEY, base64, e.g. from a Kubernetes Secret). Default: `<dataDirectory>/ledger.key`, created 0600.
    public var ledgerKeyFile: String?
    public var ledgerKey: String?
    public var durability: CertificateLedger.Durability = .full
    public var caDirectory: String?
    public var caPassphraseFile: String?
    public var caPassphrase: String?
    /// The intermediate's key in Azure Key Vault instead of a file (ca.keyVault / SIGNET_KEYVAULT_*).
    public var keyVault: KeyVaultSettings?
    /// The intermediate's key on a PKCS#11 token (an HSM) instead of a file (ca.pkcs11 / SIGNET_PKCS11_*).
    public var pkcs11: PKCS11Settings?
    public var transport: Transport = .https
    public var tlsCertificate: String?
    public var tlsKey: String?
    public var tlsHostnames = ["localhost", "127.0.0.1", "::1"]
    public var clientAuthentication: ClientAuthentication = .none
    public var clientCA: String?
    /// Accept client certificates from Signet's own issuing chain (off by default: any tenant allowed a name could be
    /// issued a certificate that looks like an identity). Signet warns at start when it is on.
    public var allowSelfIssuedClients = false
    public var defaultLifetime: Duration = IssuancePolicy.standardDefaultLifetime
    public var maximumLifetime: Duration = IssuancePolicy.standardDefaultLifetime
    public var tokenCacheLifetime: Duration = .seconds(1)
    public var clientCertificatePolicies: [ClientCertificatePolicy] = []
    /// The Kubernetes clusters managed certificates are delivered to, by name.
    public var clusters: [ClusterSettings] = []
    /// How many managed certificates are renewed at the same time.
    public var renewalConcurrency = 8
    /// What one caller, one address or one managed certificate may ask of the server in a while.
    public var limits = RequestLimits()
    /// Kubernetes service-account tokens as API credentials (the in-cluster controller's, workloads').
    public var serviceAccounts: ServiceAccountSettings?
    /// How long a CRL is valid (`crl.validitySeconds`; default 7 days): it is re-signed when half of that has passed.
    public var crlValidity: Duration = .seconds(7 * 86_400)
    /// The public base URL of /crl/ (`crl.baseURL`, e.g. `http://pki.example.com`): when set, every certificate names
    /// its CRL there in cRLDistributionPoints.
    public var crlBaseURL: String?
    /// /readyz fails when the CRL is closer than this to its nextUpdate (`crl.readinessMargin`; default 1 day).
    public var crlReadinessMargin: Duration = .seconds(86_400)
    /// The root's CRL (DER), made offline with `signet ca crl`: served at /crl/{root key id}.crl beside Signet's own.
    public var rootCRLFile: String?
    /// nextUpdate - thisUpdate of OCSP answers (`ocsp.validity`; default 1 day): cached answers are re-signed when
    /// half has passed, and at once when their certificate is revoked.
    public var ocspValidity: Duration = .seconds(86_400)
    /// How long each delegated OCSP responder certificate lives (`ocsp.responderLifetime`; default 4 days), replaced
    /// when half has passed; at least twice `ocsp.validity`.
    public var ocspResponderLifetime: Duration = .seconds(4 * 86_400)
    /// The public base URL of /ocsp (`ocsp.baseURL`): when set, every certificate names `<baseURL>/ocsp` in
    /// authorityInfoAccess.
    public var ocspBaseURL: String?
    /// ACME directories and how challenges are validated (`acme`).
    public var acme = ACMESettings()

    public init() {}

    /// The URL ACME clients reach Signet at: `acme.baseURL`, or the listen address.
    public var acmeBaseURL: String {
        if let base = acme.baseURL { return base }
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "\(transport == .https ? "https" : "http")://\(host):\(port)"
    }

    public var resolvedDatabasePath: String { databasePath ?? dataDirectory + "/ledger.sqlite" }
    public var resolvedLedgerKeyFile: String { ledgerKeyFile ?? dataDirectory + "/ledger.key" }

    /// The ledger's data-encryption key: given, or read from (created in) its file.
    public func loadLedgerKey() throws -> LedgerKey {
        do {
            if let ledgerKey { return try LedgerKey(base64: ledgerKey) }
            return try LedgerKey.loadOrCreate(path: resolvedLedgerKeyFile)
        } catch {
            throw ConfigurationError(ledgerKey != nil ? "SIGNET_LEDGER_KEY: \(error)" : "ledgerKeyFile: \(error)")
        }
    }
    public var resolvedCADirectory: String { caDirectory ?? dataDirectory + "/ca" }
    /// Only the embedded default CA location may be filled with a development CA; a configured one must exist.
    public var mayCreateDevelopmentCA: Bool { caDirectory == nil && keyVault == nil && pkcs11 == nil }

    /// Where the CA key lives, as named in logs and metrics.
    public var signerBackend: String {
        keyVault != nil ? "azure-key-vault" : pkcs11 != nil ? "pkcs11" : "file"
    }

    /// Where the CA key is, in a caller's words.
    public var signerDescription: String {
        keyVault != nil
            ? "the CA key in Azure Key Vault" : pkcs11 != nil ? "the CA key on its PKCS#11 token" : "the CA key"
    }

    /// Admission control for a remote key (a vault's quota, an HSM's sessions); a key in memory needs none.
    public var signerLimits: SignAdmission.Limits? {
        keyVault?.limits ?? pkcs11?.limits
    }

    static func nonNegative(_ value: Double, _ name: String) throws -> Double {
        guard value >= 0, value.isFinite else {
            throw ConfigurationError("\(name) must be a number ≥ 0 (0 turns the limit off)")
        }
        return value
    }

    /// Reads `path` (if given) and applies the environment.
    public static func load(path: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> ServerConfiguration
    {
        var configuration = ServerConfiguration()
        var file: ConfigurationFile?
        if let path {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ConfigurationError("cannot read \(path): \(error)")
            }
            file = try configuration.apply(yaml: text, source: path)
        }
        try configuration.apply(environment: environment)
        try configuration.resolvePolicies(file)
        return configuration
    }

    /// Applies a configuration file; returns it decoded, for `resolvePolicies`.
    @discardableResult
    mutating func apply(yaml text: String, source: String) throws -> ConfigurationFile {
        let file: ConfigurationFile
        do {
            try ConfigurationFile.rejectUnknownKeys(in: text)
            file = try YAMLDecoder().decode(ConfigurationFile.self, from: text)
        } catch let error as ConfigurationError {
            throw ConfigurationError("\(source): \(error)")
        } catch {
            throw ConfigurationError("\(source): \(error)")
        }
        if let listen = file.listen { try setListen(listen) }
        if let value = file.dataDirectory { dataDirectory = value }
        if let value = file.database { databasePath = value }
        if let value = file.ledgerKeyFile { ledgerKeyFile = value }
        if let value = file.durability { durability = try parse(value, "durability") }
        if let ca = file.ca {
            caDirectory = ca.directory ?? caDirectory
            caPassphraseFile = ca.passphraseFile ?? caPassphraseFile
            if let vault = ca.keyVault {
                keyVault = KeyVaultSettings(
                    url: vault.url, keyName: vault.keyName, keyVersion: vault.keyVersion,
                    apiVersion: vault.apiVersion ?? "7.6", caFile: vault.caFile)
                keyVault?.limits.apply(vault.maxSignsPerSecond, vault.maxConcurrentSigns, vault.maxQueuedSigns)
            }
            if let token = ca.pkcs11 {
                pkcs11 = PKCS11Settings(
                    module: token.module, tokenLabel: token.tokenLabel, keyLabel: token.keyLabel, keyID: token.keyId)
                pkcs11?.pinFile = token.pinFile
                pkcs11?.pinEnvironmentVariable = token.pinEnv
                pkcs11?.limits.apply(token.maxSignsPerSecond, token.maxConcurrentSigns, token.maxQueuedSigns)
            }
        }
        if let tls = file.tls {
            if let value = tls.mode { transport = value }
            tlsCertificate = tls.certificate ?? tlsCertificate
            tlsKey = tls.key ?? tlsKey
            tlsHostnames = tls.hostnames ?? tlsHostnames
            if let value = tls.clientAuth { clientAuthentication = value }
            clientCA = tls.clientCA ?? clientCA
            allowSelfIssuedClients = tls.allowSelfIssuedClients ?? allowSelfIssuedClients
        }
        if let issuance = file.issuance {
            if let value = issuance.defaultDuration {
                defaultLifetime = try lifetime(value, "issuance.defaultDuration")
            }
            if let value = issuance.maxDuration { maximumLifetime = try lifetime(value, "issuance.maxDuration") }
        }
        if let value = file.tokenCacheSeconds { tokenCacheLifetime = .milliseconds(Int64(value * 1000)) }
        for entry in file.clusters ?? [] {
            guard KubernetesNames.isLabel(entry.name) else {
                throw ConfigurationError(
                    "clusters: '\(entry.name)' is not a valid cluster name (lower-case letters, digits and '-')")
            }
            guard !clusters.contains(where: { $0.name == entry.name }) else {
                throw ConfigurationError("clusters: '\(entry.name)' is configured twice")
            }
            guard (entry.kubeconfig != nil) != (entry.inCluster ?? false) else {
                throw ConfigurationError(
                    "clusters.\(entry.name): give exactly one of kubeconfig (a path) and inCluster: true")
            }
            if let gateway = entry.gateway { try HostPort.validate(gateway, "clusters.\(entry.name).gateway") }
            var cluster = ClusterSettings(
                name: entry.name, kubeconfig: entry.kubeconfig, context: entry.context, gateway: entry.gateway)
            cluster.allowPlainHTTP = entry.allowPlainHTTP ?? false
            clusters.append(cluster)
        }
        if let section = file.acme { acme = try ACMESettings(section) }
        if let base = file.crl?.baseURL {
            guard base.hasPrefix("http://") || base.hasPrefix("https://") else {
                throw ConfigurationError("crl.baseURL must be an http(s) URL, not '\(base)'")
            }
            crlBaseURL = base.hasSuffix("/") ? String(base.dropLast()) : base
        }
        if let path = file.crl?.rootCRL { rootCRLFile = path }
        if let margin = file.crl?.readinessMargin { crlReadinessMargin = try lifetime(margin, "crl.readinessMargin") }
        if let validity = file.crl?.validity {
            let parsed = try lifetime(validity, "crl.validity")
            guard parsed >= .seconds(60) else {
                throw ConfigurationError(
                    "crl.validity must be at least a minute; a CRL is re-signed when half of it has passed")
            }
            crlValidity = parsed
        }
        if let base = file.ocsp?.baseURL {
            guard base.hasPrefix("http://") || base.hasPrefix("https://") else {
                throw ConfigurationError("ocsp.baseURL must be an http(s) URL, not '\(base)'")
            }
            ocspBaseURL = base.hasSuffix("/") ? String(base.dropLast()) : base
        }
        if let validity = file.ocsp?.validity {
            ocspValidity = try lifetime(validity, "ocsp.validity")
            guard ocspValidity >= .seconds(60) else {
                throw ConfigurationError("ocsp.validity must be at least a minute")
            }
        }
        if let responderLifetime = file.ocsp?.responderLifetime {
            ocspResponderLifetime = try lifetime(responderLifetime, "ocsp.responderLifetime")
        }
        guard ocspResponderLifetime >= ocspValidity * 2 else {
            throw ConfigurationError(
                "ocsp.responderLifetime (\(Lifetime.format(ocspResponderLifetime))) must be at least twice ocsp.validity (\(Lifetime.format(ocspValidity))): it is replaced at half its life and must outlive every answer it signed"
            )
        }
        guard crlReadinessMargin < crlValidity / 2 else {
            throw ConfigurationError(
                "crl.readinessMargin (\(Lifetime.format(crlReadinessMargin))) must be under half of crl.validity (\(Lifetime.format(crlValidity))): a CRL is re-signed when half its validity has passed"
            )
        }
        if let section = file.limits {
            if let value = section.issuancesPerSecond {
                limits.issuancesPerSecond = try Self.nonNegative(value, "limits.issuancesPerSecond")
            }
            if let value = section.issuanceBurst {
                limits.issuanceBurst = try Self.nonNegative(value, "limits.issuanceBurst")
            }
            if let value = section.failedAuthenticationsPerMinute {
                limits.failedAuthenticationsPerMinute = try Self.nonNegative(
                    value, "limits.failedAuthenticationsPerMinute")
            }
            if let value = section.forcedRenewalsPerHour {
                limits.forcedRenewalsPerHour = try Self.nonNegative(value, "limits.forcedRenewalsPerHour")
            }
            if let value = section.probeCacheSeconds {
                limits.probeCacheSeconds = try Self.nonNegative(value, "limits.probeCacheSeconds")
            }
        }
        if let value = file.renewalConcurrency {
            guard value >= 1 else { throw ConfigurationError("renewalConcurrency must be at least 1") }
            renewalConcurrency = value
        }
        return file
    }

    /// Builds the policies of service accounts and client certificates from the file's sections, once the file and
    /// the environment are both applied: a policy without its own maxDuration gets the final `issuance.maxDuration`
    /// (or `SIGNET_MAX_DURATION`), and every policy the final default duration.
    mutating func resolvePolicies(_ file: ConfigurationFile?) throws {
        guard let file else { return }
        if let accounts = file.serviceAccounts {
            guard clusters.contains(where: { $0.name == accounts.cluster }) else {
                throw ConfigurationError("serviceAccounts.cluster: '\(accounts.cluster)' is not among clusters")
            }
            var settings = ServiceAccountSettings(cluster: accounts.cluster)
            settings.audience = accounts.audience ?? settings.audience
            if let validation = accounts.validation {
                settings.validation = try parse(validation, "serviceAccounts.validation")
            }
            settings.issuer = accounts.issuer ?? settings.issuer
            func identities(_ entries: [String]?, _ key: String) throws -> Set<ServiceAccountIdentity> {
                Set(
                    try (entries ?? []).map { entry in
                        let parts = entry.split(separator: "/").map(String.init)
                        guard parts.count == 2 else {
                            throw ConfigurationError("serviceAccounts.\(key): '\(entry)' is not namespace/name")
                        }
                        return ServiceAccountIdentity(namespace: parts[0], name: parts[1])
                    })
            }
            settings.controllers = try identities(accounts.controllers, "controllers")
            settings.auditors = try identities(accounts.auditors, "auditors")
            for entry in accounts.namespaces ?? [] {
                let allowed = try entry.allow.map { try NamePattern($0) }
                // A namespace's workload identities are its own: a URI pattern must be a SPIFFE ID under /ns/<namespace>/.
                for pattern in allowed where pattern.staysInNamespace(entry.namespace) == false {
                    throw ConfigurationError(
                        "serviceAccounts.namespaces[\(entry.namespace)].allow: '\(pattern)' is not a SPIFFE ID of namespace \(entry.namespace) (spiffe://TRUST-DOMAIN/ns/\(entry.namespace)/sa/…)"
                    )
                }
                settings.namespaces[entry.namespace] = IssuancePolicy(
                    allowedNames: allowed,
                    allowedProfiles: Set(
                        try (entry.profiles ?? [CertificateProfile.server.rawValue]).map {
                            try profile($0, "serviceAccounts.namespaces.profiles")
                        }),
                    maximumLifetime: try entry.maxDuration.map {
                        try lifetime($0, "serviceAccounts.namespaces.maxDuration")
                    } ?? maximumLifetime,
                    defaultLifetime: defaultLifetime
                )
            }
            serviceAccounts = settings
        }
        for (index, entry) in (file.clientCertificates ?? []).enumerated() {
            let place = "clientCertificates[\(index)]"
            guard entry.commonName == nil else {
                throw ConfigurationError(
                    "\(place).commonName: a common name alone is not an identity (any CA could put it in a certificate); match the full subject (subject: 'CN=ops-robot,O=Example') or a URI SAN (uri:), with the issuing CA's subject (issuer:)"
                )
            }
            let match: ClientCertificatePolicy.Match
            switch (entry.subject, entry.uri) {
            case (let subject?, nil): match = .subject(DistinguishedNames.normalized(subject))
            case (nil, let uri?): match = .uri(uri)
            default: throw ConfigurationError("\(place): give exactly one of subject (the full DN) and uri (a URI SAN)")
            }
            guard let issuer = entry.issuer, !issuer.isEmpty else {
                throw ConfigurationError(
                    "\(place).issuer: name the issuing CA's subject DN, so that only certificates from that CA match")
            }
            let policy = IssuancePolicy(
                allowedNames: try entry.allow.map { try NamePattern($0) },
                allowedProfiles: Set(
                    try (entry.profiles ?? [CertificateProfile.server.rawValue]).map {
                        try profile($0, "\(place).profiles")
                    }),
                maximumLifetime: try entry.maxDuration.map { try lifetime($0, "\(place).maxDuration") }
                    ?? maximumLifetime,
                defaultLifetime: defaultLifetime,
                allowedTargets: try (entry.targets ?? []).map { text in
                    do { return try TargetPattern(text) } catch {
                        throw ConfigurationError("\(place).targets: \(error)")
                    }
                }
            )
            clientCertificatePolicies.append(
                ClientCertificatePolicy(match: match, issuer: DistinguishedNames.normalized(issuer), policy: policy))
        }
    }

    mutating func apply(environment: [String: String]) throws {
        for (variable, path) in [
            ("SIGNET_LIMIT_ISSUANCES_PER_SECOND", \RequestLimits.issuancesPerSecond),
            ("SIGNET_LIMIT_ISSUANCE_BURST", \.issuanceBurst),
            ("SIGNET_LIMIT_FAILED_AUTHENTICATIONS_PER_MINUTE", \.failedAuthenticationsPerMinute),
            ("SIGNET_LIMIT_FORCED_RENEWALS_PER_HOUR", \.forcedRenewalsPerHour),
            ("SIGNET_LIMIT_PROBE_CACHE_SECONDS", \.probeCacheSeconds),
        ] as [(String, WritableKeyPath<RequestLimits, Double>)] {
            guard let text = environment[variable] else { continue }
            guard let value = Double(text) else { throw ConfigurationError("\(variable): '\(text)' is not a number") }
            limits[keyPath: path] = try Self.nonNegative(value, variable)
        }
        if let value = environment["SIGNET_LISTEN"] { try setListen(value) }
        if let value = environment["SIGNET_DATA_DIR"] { dataDirectory = value }
        if let value = environment["SIGNET_DATABASE"] { databasePath = value }
        if let value = environment["SIGNET_LEDGER_KEY_FILE"] { ledgerKeyFile = value }
        if let value = environment["SIGNET_LEDGER_KEY"] { ledgerKey = value }
        if let value = environment["SIGNET_DURABILITY"] { durability = try parse(value, "SIGNET_DURABILITY") }
        if let value = environment["SIGNET_CA_DIR"] { caDirectory = value }
        if let value = environment["SIGNET_CA_PASSPHRASE_FILE"] { caPassphraseFile = value }
        if let value = environment["SIGNET_CA_PASSPHRASE"] { caPassphrase = value }
        if let url = environment["SIGNET_KEYVAULT_URL"] {
            guard let name = environment["SIGNET_KEYVAULT_KEY"] ?? keyVault?.keyName else {
                throw ConfigurationError("SIGNET_KEYVAULT_URL needs SIGNET_KEYVAULT_KEY (the key's name)")
            }
            keyVault = KeyVaultSettings(
                url: url, keyName: name, keyVersion: environment["SIGNET_KEYVAULT_KEY_VERSION"] ?? keyVault?.keyVersion,
                apiVersion: environment["SIGNET_KEYVAULT_API_VERSION"] ?? keyVault?.apiVersion ?? "7.6",
                caFile: environment["SIGNET_KEYVAULT_CA_FILE"] ?? keyVault?.caFile)
        }
        keyVault?.limits.apply(
            try Self.number(environment, "SIGNET_KEYVAULT_MAX_SIGNS_PER_SECOND"),
            try Self.number(environment, "SIGNET_KEYVAULT_MAX_CONCURRENT_SIGNS"),
            try Self.number(environment, "SIGNET_KEYVAULT_MAX_QUEUED_SIGNS")
        )
        if let module = environment["SIGNET_PKCS11_MODULE"] {
            pkcs11 = pkcs11 ?? PKCS11Settings(module: module, tokenLabel: "", keyLabel: nil, keyID: nil)
            pkcs11?.module = module
        }
        if let value = environment["SIGNET_PKCS11_TOKEN"] { pkcs11?.tokenLabel = value }
        if let value = environment["SIGNET_PKCS11_KEY_LABEL"] {
            pkcs11?.keyLabel = value
            pkcs11?.keyID = nil
        }
        if let value = environment["SIGNET_PKCS11_KEY_ID"] {
            pkcs11?.keyID = value
            pkcs11?.keyLabel = nil
        }
        if let value = environment["SIGNET_PKCS11_PIN_FILE"] { pkcs11?.pinFile = value }
        if let value = environment["SIGNET_PKCS11_PIN_ENV"] { pkcs11?.pinEnvironmentVariable = value }
        pkcs11?.limits.apply(
            try Self.number(environment, "SIGNET_PKCS11_MAX_SIGNS_PER_SECOND"),
            try Self.number(environment, "SIGNET_PKCS11_MAX_CONCURRENT_SIGNS"),
            try Self.number(environment, "SIGNET_PKCS11_MAX_QUEUED_SIGNS")
        )
        guard keyVault == nil || pkcs11 == nil else {
            throw ConfigurationError("the CA key is either in Key Vault or on a PKCS#11 token, not both")
        }
        try pkcs11?.validate()
        if let value = environment["SIGNET_TLS"] { transport = try parse(value, "SIGNET_TLS") }
        if let value = environment["SIGNET_TLS_HOSTNAMES"] {
            tlsHostnames = value.split(separator: ",").map(String.init)
        }
        if let value = environment["SIGNET_DEFAULT_DURATION"] {
            defaultLifetime = try lifetime(value, "SIGNET_DEFAULT_DURATION")
        }
        if let value = environment["SIGNET_MAX_DURATION"] {
            maximumLifetime = try lifetime(value, "SIGNET_MAX_DURATION")
        }
        guard defaultLifetime <= maximumLifetime else {
            throw ConfigurationError(
                "the default duration \(Lifetime.format(defaultLifetime)) exceeds the maximum \(Lifetime.format(maximumLifetime))"
            )
        }
    }

    private mutating func setListen(_ value: String) throws {
        // Port 0 asks for any free port (tests read the one bound).
        guard let address = HostPort.split(value, wildcardHost: "0.0.0.0", allowingPortZero: true) else {
            throw ConfigurationError("listen '\(value)' is not host:port")
        }
        (host, port) = address
    }

    private static func number<T: LosslessStringConvertible>(_ environment: [String: String], _ key: String) throws
        -> T?
    {
        guard let text = environment[key] else { return nil }
        guard let value = T(text) else { throw ConfigurationError("\(key): '\(text)' is not a number") }
        return value
    }

    private func parse<T: RawRepresentable>(_ value: String, _ key: String) throws -> T where T.RawValue == String {
        guard let parsed = T(rawValue: value.lowercased()) else {
            throw ConfigurationError("\(key): '\(value)' is not a valid value")
        }
        return parsed
    }

    /// A profile a policy may allow: server, client or server-client (never Signet's own ocsp-signing).
    private func profile(_ value: String, _ key: String) throws -> CertificateProfile {
        guard let parsed = CertificateProfile(requested: value.lowercased()) else {
            throw ConfigurationError(
                "\(key): '\(value)' is not one of \(CertificateProfile.requestable.map(\.rawValue).joined(separator: ", "))"
            )
        }
        return parsed
    }

    private func lifetime(_ value: String, _ key: String) throws -> Duration {
        do {
            return try Lifetime.parse(value)
        } catch {
            throw ConfigurationError("\(key): \(error)")
        }
    }
}
