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
    fileprivate mutating func apply(yaml text: String, source: String) throws -> ConfigurationFile {
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
    fileprivate mutating func resolvePolicies(_ file: ConfigurationFile?) throws {
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

/// Which service-account tokens Signet accepts, how it checks them, and what each namespace may be issued.
/// The ACME front end: its directories, the public URL clients reach it at, and how challenges are validated.
public struct ACMESettings: Sendable, Equatable {
    /// The URL clients use (`https://signet.example.com`): every URL Signet hands out and every JWS `url` it checks
    /// starts with it. Default: `https://` + the listen address (fine for clients on the same machine).
    public var baseURL: String?
    public var directories: [ACMEDirectoryPolicy] = []
    /// Where http-01 and tls-alpn-01 are validated: 80 and 443 as RFC 8555 and 8737 say; other ports for tests.
    public var httpPort = 80
    public var tlsPort = 443
    /// The DNS server (IPv4 `address:port`) asked for dns-01 TXT records and for the addresses of names to
    /// validate; default: the system's resolver configuration.
    public var resolver: String?
    public var validationTimeout: Duration = .seconds(10)

    public init() {}

    public func directory(named name: String) -> ACMEDirectoryPolicy? {
        directories.first { $0.name == name }
    }

    fileprivate init(_ file: ConfigurationFile.ACME) throws {
        baseURL = file.baseURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        if let baseURL, !(baseURL.hasPrefix("https://") || baseURL.hasPrefix("http://")) {
            throw ConfigurationError("acme.baseURL must be an http(s) URL, not '\(baseURL)'")
        }
        for (key, port) in [("httpPort", file.httpPort), ("tlsPort", file.tlsPort)] {
            if let port, !(1...65_535).contains(port) {
                throw ConfigurationError("acme.\(key) must be a port number, not \(port)")
            }
        }
        httpPort = file.httpPort ?? httpPort
        tlsPort = file.tlsPort ?? tlsPort
        if let resolver = file.resolver {
            guard let (host, _) = HostPort.split(resolver), IPAddress(host)?.bytes.count == 4 else {
                throw ConfigurationError(
                    "acme.resolver must be an IPv4 address and port (10.0.0.10:53), not '\(resolver)'")
            }
            self.resolver = resolver
        }
        if let seconds = file.validationTimeoutSeconds {
            guard seconds > 0, seconds <= 120 else {
                throw ConfigurationError("acme.validationTimeoutSeconds must be in (0, 120]")
            }
            validationTimeout = .milliseconds(Int64(seconds * 1000))
        }
        for (index, entry) in (file.directories ?? []).enumerated() {
            let key = "acme.directories[\(index)]"
            guard !entry.name.isEmpty,
                entry.name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") })
            else {
                throw ConfigurationError("\(key).name may contain letters, digits and '-' only (it is part of URLs)")
            }
            guard directory(named: entry.name) == nil else {
                throw ConfigurationError("\(key).name '\(entry.name)' is used twice")
            }
            guard !entry.allow.isEmpty else {
                throw ConfigurationError("\(key).allow lists no name pattern: its accounts could order nothing")
            }
            func patterns(_ texts: [String], _ field: String) throws -> [NamePattern] {
                try texts.map { text in
                    do { return try NamePattern(text) } catch { throw ConfigurationError("\(key).\(field): \(error)") }
                }
            }
            var policy = ACMEDirectoryPolicy(name: entry.name, allowedNames: try patterns(entry.allow, "allow"))
            if let names = entry.challenges {
                policy.challenges = try names.map { name in
                    guard let type = ChallengeType(rawValue: name) else {
                        throw ConfigurationError(
                            "\(key).challenges: '\(name)' is not one of http-01, dns-01, tls-alpn-01")
                    }
                    return type
                }
            }
            func lifetime(_ text: String?, _ field: String) throws -> Duration? {
                guard let text else { return nil }
                do { return try Lifetime.parse(text) } catch { throw ConfigurationError("\(key).\(field): \(error)") }
            }
            policy.maximumLifetime = try lifetime(entry.maxDuration, "maxDuration") ?? policy.maximumLifetime
            policy.defaultLifetime = min(
                try lifetime(entry.defaultDuration, "defaultDuration") ?? policy.maximumLifetime, policy.maximumLifetime
            )
            if let names = entry.profiles {
                policy.profiles = try names.map { name in
                    guard let profile = CertificateProfile(requested: name) else {
                        throw ConfigurationError(
                            "\(key).profiles: '\(name)' is not one of server, client, server-client")
                    }
                    return profile
                }
                guard !policy.profiles.isEmpty else { throw ConfigurationError("\(key).profiles is empty") }
            }
            policy.externalAccountRequired = entry.externalAccountRequired ?? false
            policy.trustedNames = try patterns(entry.trustedNames ?? [], "trustedNames")
            policy.alwaysValid = entry.alwaysValid ?? false
            policy.website = entry.website
            policy.termsOfService = entry.termsOfService
            policy.caaIdentities = entry.caaIdentities ?? []
            directories.append(policy)
        }
    }
}

/// Bounds on what callers can make the server do (`limits` / SIGNET_LIMIT_*). A rate of 0 turns that limit off.
public struct RequestLimits: Sendable, Equatable {
    /// Issuances per second for one caller identity (a token, a service account, an identity), and the burst
    /// it may spend at once: a token bucket. Past it: 429 with Retry-After.
    public var issuancesPerSecond: Double = 100
    public var issuanceBurst: Double = 1_000
    /// Failed authentications one source address may make a minute (the burst is the same number); past it, every
    /// request from the address gets 429 until the bucket refills, before any credential is looked at.
    public var failedAuthenticationsPerMinute: Double = 60
    /// Forced renewals (`POST …/renew`) of one managed certificate an hour (burst the same).
    public var forcedRenewalsPerHour: Double = 10
    /// `/readyz` and `/metrics` answer from results at most this old, so a flood of them costs one signer check
    /// and one ledger count per period.
    public var probeCacheSeconds: Double = 2

    public init() {}
}

public struct ServiceAccountSettings: Sendable, Equatable {
    public enum Validation: String, Sendable, Equatable {
        /// Ask the API server (TokenReview): also catches tokens of deleted pods. Needs `create` on tokenreviews.
        case tokenReview = "tokenreview"
        /// Check the JWT against the cluster's published keys (/openid/v1/jwks), without a call per token.
        case jwks
    }

    /// The configured cluster whose tokens these are.
    public var cluster: String
    /// The audience the tokens must be projected for.
    public var audience = "signet"
    public var validation: Validation = .tokenReview
    /// The `iss` of the cluster's tokens: required to match when set; offline validation uses the in-cluster
    /// default when it is not (AKS and other managed clusters issue with their OIDC issuer URL: set it there).
    public var issuer: String?
    public var resolvedIssuer: String { issuer ?? "https://kubernetes.default.svc.cluster.local" }
    /// Service accounts that may ask on behalf of another namespace (the renewal controller): the
    /// `Signet-On-Behalf-Of` header names the namespace whose policy applies.
    public var controllers: Set<ServiceAccountIdentity> = []
    /// Service accounts that read every tenant's certificates (an auditing job, a dashboard).
    public var auditors: Set<ServiceAccountIdentity> = []
    /// What a namespace's service accounts (or a controller acting for it) may be issued.
    public var namespaces: [String: IssuancePolicy] = [:]

    public init(cluster: String) {
        self.cluster = cluster
    }

    /// The namespace and policy a service account is issued under: its own namespace's, or, for a listed controller
    /// asking on behalf of another namespace, that namespace's. The one place this rule is stated, for requests and
    /// for renewals made on an account's behalf.
    func policy(for account: ServiceAccountIdentity, onBehalfOf: String?) throws(AuthorizationError) -> (
        namespace: String, policy: IssuancePolicy
    ) {
        let identity = "serviceaccount:\(account.namespace):\(account.name)"
        var namespace = account.namespace
        if let onBehalfOf, onBehalfOf != account.namespace {
            guard controllers.contains(account) else { throw .notAController(identity, onBehalfOf) }
            namespace = onBehalfOf
        }
        guard let policy = namespaces[namespace] else { throw .noNamespacePolicy(identity, namespace) }
        return (namespace, policy)
    }
}

/// A cluster managed certificates are delivered to: a kubeconfig (and context), or the cluster Signet runs in.
public struct ClusterSettings: Sendable, Equatable {
    public var name: String
    /// nil: in-cluster (service-account token and CA).
    public var kubeconfig: String?
    public var context: String?
    /// `host:port` of the cluster's ingress gateway: after each delivery Signet connects there with SNI set to the
    /// certificate's first name and records whether the new serial is served.
    public var gateway: String?
    /// Accept a plain-HTTP API server (a local test cluster); refused otherwise.
    public var allowPlainHTTP = false

    public init(name: String, kubeconfig: String?, context: String? = nil, gateway: String? = nil) {
        self.name = name
        self.kubeconfig = kubeconfig
        self.context = context
        self.gateway = gateway
    }
}

public enum HostPort {
    /// `host:port` or `[v6]:port`; `:port` too when a `wildcardHost` stands in for "every interface".
    public static func split(_ text: String, wildcardHost: String? = nil, allowingPortZero: Bool = false) -> (
        host: String, port: Int
    )? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            ((allowingPortZero ? 0 : 1)...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let chosen = host.isEmpty ? wildcardHost : host else { return nil }
        return (chosen, port)
    }

    static func validate(_ text: String, _ key: String) throws {
        guard split(text) != nil else { throw ConfigurationError("\(key): '\(text)' is not host:port") }
    }
}

public struct KeyVaultSettings: Sendable, Equatable {
    public var url: String
    public var keyName: String
    /// Pinned, or nil for the key's current version (resolved and logged at start).
    public var keyVersion: String?
    public var apiVersion: String
    /// Extra CA bundle for the vault's TLS certificate (private endpoints behind a corporate CA; tests).
    public var caFile: String?
    /// Admission control, so Signet stays inside the vault's quota (software EC keys: 4,000 operations per 10 s
    /// per vault, shared with everything else using it).
    public var limits = SignAdmission.Limits(ratePerSecond: 200, maximumConcurrent: 32, maximumQueued: 512)
}

public struct PKCS11Settings: Sendable, Equatable {
    /// The vendor's PKCS#11 library, loaded at start (e.g. /usr/lib/softhsm/libsofthsm2.so).
    public var module: String
    public var tokenLabel: String
    /// The key pair is found by its CKA_LABEL or by its CKA_ID (hex); exactly one is set.
    public var keyLabel: String?
    public var keyID: String?
    /// The user PIN: the first line of a file, or the value of an environment variable.
    public var pinFile: String?
    public var pinEnvironmentVariable: String?
    /// The concurrency limit is also the number of sessions opened on the token.
    public var limits = SignAdmission.Limits(
        ratePerSecond: 10_000, burst: 1_000, maximumConcurrent: 4, maximumQueued: 1_024)

    public init(module: String, tokenLabel: String, keyLabel: String?, keyID: String?) {
        self.module = module
        self.tokenLabel = tokenLabel
        self.keyLabel = keyLabel
        self.keyID = keyID
    }

    /// The user PIN, read when the signer starts (never kept in the configuration).
    public func readPIN(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> [UInt8] {
        if let pinFile {
            do {
                return try PassphraseFile.read(pinFile)
            } catch {
                throw ConfigurationError("cannot read the PKCS#11 PIN file \(pinFile)")
            }
        }
        guard let name = pinEnvironmentVariable, let value = environment[name] else {
            throw ConfigurationError("the PKCS#11 PIN variable \(pinEnvironmentVariable ?? "") is not set")
        }
        return Array(value.utf8)
    }

    func validate() throws {
        guard !tokenLabel.isEmpty else {
            throw ConfigurationError("the PKCS#11 token needs its label: ca.pkcs11.tokenLabel or SIGNET_PKCS11_TOKEN")
        }
        guard (keyLabel != nil) != (keyID != nil) else {
            throw ConfigurationError(
                "the PKCS#11 key needs exactly one of keyLabel and keyId (SIGNET_PKCS11_KEY_LABEL, SIGNET_PKCS11_KEY_ID)"
            )
        }
        if let keyID, keyID.isEmpty || keyID.count % 2 != 0 || !keyID.allSatisfy(\.isHexDigit) {
            throw ConfigurationError("the PKCS#11 key id '\(keyID)' is not hex (e.g. 01 or a1b2)")
        }
        guard pinFile != nil || pinEnvironmentVariable != nil else {
            throw ConfigurationError(
                "the PKCS#11 token needs a PIN: ca.pkcs11.pinFile or pinEnv (SIGNET_PKCS11_PIN_FILE, SIGNET_PKCS11_PIN_ENV)"
            )
        }
    }
}

extension SignAdmission.Limits {
    /// Overrides whichever of the three limits are given.
    mutating func apply(_ perSecond: Double?, _ concurrent: Int?, _ queued: Int?) {
        if let perSecond {
            ratePerSecond = perSecond
            burst = max(1, perSecond / 10)
        }
        if let concurrent { maximumConcurrent = max(1, concurrent) }
        if let queued { maximumQueued = max(0, queued) }
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The YAML shape, all keys optional.
private struct ConfigurationFile: Decodable {
    struct CA: Decodable {
        var directory: String?
        var passphraseFile: String?
        var keyVault: KeyVault?
        var pkcs11: PKCS11?
    }
    struct PKCS11: Decodable {
        var module: String
        var tokenLabel: String
        var keyLabel: String?
        var keyId: String?
        var pinFile: String?
        var pinEnv: String?
        var maxSignsPerSecond: Double?
        var maxConcurrentSigns: Int?
        var maxQueuedSigns: Int?
    }
    struct KeyVault: Decodable {
        var url: String
        var keyName: String
        var keyVersion: String?
        var apiVersion: String?
        var caFile: String?
        var maxSignsPerSecond: Double?
        var maxConcurrentSigns: Int?
        var maxQueuedSigns: Int?
    }
    struct TLS: Decodable {
        var mode: ServerConfiguration.Transport?
        var certificate: String?
        var key: String?
        var hostnames: [String]?
        var clientAuth: ServerConfiguration.ClientAuthentication?
        var clientCA: String?
        var allowSelfIssuedClients: Bool?
    }
    struct Issuance: Decodable {
        var defaultDuration: String?
        var maxDuration: String?
    }
    struct ClientCertificate: Decodable {
        var commonName: String?
        var subject: String?
        var uri: String?
        var issuer: String?
        var allow: [String]
        var maxDuration: String?
        var profiles: [String]?
        var targets: [String]?
    }
    struct Cluster: Decodable {
        var name: String
        var kubeconfig: String?
        var context: String?
        var inCluster: Bool?
        var gateway: String?
        var allowPlainHTTP: Bool?
    }

    var listen: String?
    var dataDirectory: String?
    var database: String?
    var ledgerKeyFile: String?
    var durability: String?
    var ca: CA?
    var tls: TLS?
    var issuance: Issuance?
    var tokenCacheSeconds: Double?
    var clientCertificates: [ClientCertificate]?
    var clusters: [Cluster]?
    var renewalConcurrency: Int?
    var limits: Limits?
    struct Limits: Decodable {
        var issuancesPerSecond: Double?
        var issuanceBurst: Double?
        var failedAuthenticationsPerMinute: Double?
        var forcedRenewalsPerHour: Double?
        var probeCacheSeconds: Double?
    }
    var crl: CRL?
    struct CRL: Decodable {
        var validity: String?
        var baseURL: String?
        var readinessMargin: String?
        var rootCRL: String?
    }
    var ocsp: OCSP?
    struct OCSP: Decodable {
        var validity: String?
        var responderLifetime: String?
        var baseURL: String?
    }
    var acme: ACME?
    struct ACME: Decodable {
        struct Directory: Decodable {
            var name: String
            var allow: [String]
            var challenges: [String]?
            var maxDuration: String?
            var defaultDuration: String?
            var profiles: [String]?
            var externalAccountRequired: Bool?
            var trustedNames: [String]?
            var alwaysValid: Bool?
            var website: String?
            var termsOfService: String?
            var caaIdentities: [String]?
        }
        var baseURL: String?
        var httpPort: Int?
        var tlsPort: Int?
        var resolver: String?
        var validationTimeoutSeconds: Double?
        var directories: [Directory]?
    }
    var serviceAccounts: ServiceAccounts?
    struct ServiceAccounts: Decodable {
        struct Namespace: Decodable {
            var namespace: String
            var allow: [String]
            var maxDuration: String?
            var profiles: [String]?
        }
        var cluster: String
        var audience: String?
        var validation: String?
        var issuer: String?
        var controllers: [String]?
        var auditors: [String]?
        var namespaces: [Namespace]?
    }

    /// The keys each section may have. Decoding ignores unknown keys, so they are checked here: a misspelt
    /// setting is an error, never silently the default.
    /// The keys a file may have, from the one table of settings.
    static var knownKeys: [String: Set<String>] { ConfigurationReference.knownKeys }

    static func rejectUnknownKeys(in yaml: String) throws {
        guard let root = try Yams.load(yaml: yaml) as? [String: Any] else { return }
        try check(root, section: "", path: [])
        for (section, value) in root where knownKeys[section] != nil {
            let entries = (value as? [Any]) ?? [value]
            for case let entry as [String: Any] in entries {
                try check(entry, section: section, path: [section])
                for (inner, innerValue) in entry where knownKeys["\(section).\(inner)"] != nil {
                    for case let mapping as [String: Any] in (innerValue as? [Any]) ?? [innerValue] {
                        try check(mapping, section: "\(section).\(inner)", path: [section, inner])
                    }
                }
            }
        }
    }

    private static func check(_ mapping: [String: Any], section: String, path: [String]) throws {
        let known = knownKeys[section] ?? []
        if let unknown = mapping.keys.sorted().first(where: { !known.contains($0) }) {
            throw ConfigurationError(
                "unknown setting '\((path + [unknown]).joined(separator: "."))'; known here: \(known.sorted().joined(separator: ", "))"
            )
        }
    }
}
