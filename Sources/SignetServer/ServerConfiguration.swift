import SignetACME
import SignetAuthority
import SignetKeys
import SignetKubernetes
import SignetLedger
import SignetLogging
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
    /// The `database` setting: a SQLite file, or a `postgres://` URL (see `LedgerDatabase`).
    public var databasePath: String?
    /// PostgreSQL's password: read from this file (`databasePasswordFile`), or given itself (SIGNET_DATABASE_PASSWORD,
    /// environment only, e.g. from a Kubernetes Secret). Never part of the URL.
    public var databasePasswordFile: String?
    public var databasePassword: String?
    /// The key that seals private keys in the ledger (`ledgerKeyFile` / SIGNET_LEDGER_KEY_FILE), or the key itself
    /// (SIGNET_LEDGER_KEY, base64, e.g. from a Kubernetes Secret). Default: `<dataDirectory>/ledger.key`, created 0600.
    public var ledgerKeyFile: String?
    public var ledgerKey: String?
    public var durability: CertificateLedger.Durability = .full
    /// How the log is written: text, or one JSON object per line for log pipelines.
    public var logFormat: LogFormat = .text
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
    /// How long a claim on a due renewal lasts without its replica's heartbeat (a third of it); see
    /// `ManagedCertificateStore.claimDueManagedCertificates`.
    public var renewalClaim: Duration = .seconds(60)
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

    /// The ledger's backend and location, with PostgreSQL's password read.
    public func ledgerDatabase() throws -> LedgerDatabase {
        var password = databasePassword
        if password == nil, let file = databasePasswordFile {
            do {
                // One line, as `kubectl create secret --from-file` and editors leave it: a final newline is not part of it.
                var text = try String(contentsOfFile: file, encoding: .utf8)
                while text.last?.isNewline == true { text.removeLast() }
                password = text
            } catch {
                throw ConfigurationError("databasePasswordFile \(file) cannot be read: \(error)")
            }
        }
        return try LedgerDatabase(resolvedDatabasePath, password: password, durability: durability)
    }

    /// Whether the ledger is a file of this machine's (backups, file modes and the data directory apply).
    public var ledgerIsFile: Bool {
        !LedgerDatabase.isPostgresURL(resolvedDatabasePath)
    }
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

    /// Reads `path` (if given), lays the environment over it, and applies every setting in the table's order; then
    /// the sections read whole (clusters, ACME directories, service accounts, client certificates), whose policies
    /// inherit the final lifetimes; then the checks that span settings.
    public static func load(path: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> ServerConfiguration
    {
        var file = ConfigurationFile()
        if let path {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ConfigurationError("cannot read \(path): \(error)")
            }
            do {
                file = try ConfigurationFile.read(text)
            } catch {
                throw ConfigurationError("\(path): \(error)")
            }
        }
        var values = file.values
        for setting in ConfigurationReference.settings {
            guard let variable = setting.environment, let text = environment[variable] else { continue }
            values[setting.key] = ConfigurationValue(shape: .scalar(text), source: variable)
            for displaced in setting.displaces where values[displaced]?.source == displaced { values[displaced] = nil }
        }
        var configuration = ServerConfiguration()
        for setting in ConfigurationReference.settings {
            guard let apply = setting.apply, let value = values[setting.key] else { continue }
            try apply(&configuration, value)
        }
        try configuration.resolveSections(file)
        try configuration.validate()
        return configuration
    }

    /// The checks that span settings, once every one is applied.
    func validate() throws {
        guard keyVault == nil || pkcs11 == nil else {
            throw ConfigurationError("the CA key is either in Key Vault or on a PKCS#11 token, not both")
        }
        if let keyVault, keyVault.keyName.isEmpty {
            throw ConfigurationError(
                "the Key Vault CA key needs its name: ca.keyVault.keyName or SIGNET_KEYVAULT_KEY")
        }
        try pkcs11?.validate()
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
        guard defaultLifetime <= maximumLifetime else {
            throw ConfigurationError(
                "the default duration \(Lifetime.format(defaultLifetime)) exceeds the maximum \(Lifetime.format(maximumLifetime))"
            )
        }
    }

    /// A Key Vault setting needs the vault (`ca.keyVault.url`, applied first).
    mutating func keyVault(_ value: ConfigurationValue, _ change: (inout KeyVaultSettings) throws -> Void) throws {
        guard var settings = keyVault else {
            throw ConfigurationError("\(value.source) needs the vault: ca.keyVault.url or SIGNET_KEYVAULT_URL")
        }
        try change(&settings)
        keyVault = settings
    }

    /// A PKCS#11 setting needs the module (`ca.pkcs11.module`, applied first).
    mutating func pkcs11(_ value: ConfigurationValue, _ change: (inout PKCS11Settings) throws -> Void) throws {
        guard var settings = pkcs11 else {
            throw ConfigurationError("\(value.source) needs the module: ca.pkcs11.module or SIGNET_PKCS11_MODULE")
        }
        try change(&settings)
        pkcs11 = settings
    }

    /// The sections read whole: clusters first (service accounts name one), then ACME directories, then the
    /// policies of service accounts and client certificates, built with the final `issuance.maxDuration` (or
    /// `SIGNET_MAX_DURATION`) for those without their own, and the final default duration for all.
    mutating func resolveSections(_ file: ConfigurationFile) throws {
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
        try acme.addDirectories(file.acme?.directories ?? [])
        try resolvePolicies(file)
    }

    /// The policies of service accounts and client certificates.
    mutating func resolvePolicies(_ file: ConfigurationFile) throws {
        if let accounts = file.serviceAccounts {
            guard clusters.contains(where: { $0.name == accounts.cluster }) else {
                throw ConfigurationError("serviceAccounts.cluster: '\(accounts.cluster)' is not among clusters")
            }
            var settings = ServiceAccountSettings(cluster: accounts.cluster)
            settings.audience = accounts.audience ?? settings.audience
            if let validation = accounts.validation {
                settings.validation = try ConfigurationValue(
                    shape: .scalar(validation), source: "serviceAccounts.validation"
                ).choice()
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
