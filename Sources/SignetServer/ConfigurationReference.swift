import SignetAuthority

/// Every setting of `signet serve`, once: its YAML key, its environment variable, its default, how its value is
/// applied and what it does. Loading reads the file into values by key, lays the environment over them, and applies
/// each in this table's order (`ServerConfiguration.load`); the file's known keys, the README's settings reference
/// and the test of defaults all come from here, so no setting can be known to one and forgotten by another.
public enum ConfigurationReference {
    /// Applies one value to the configuration.
    typealias Apply = @Sendable (inout ServerConfiguration, ConfigurationValue) throws -> Void

    public struct Setting: Sendable {
        /// The dotted YAML path; entries of a list are under the list's key (`clusters.name`).
        public let key: String
        public let environment: String?
        public let defaultValue: String
        public let help: String
        /// nil for the fields of a section read whole (`clusters`, `clientCertificates`, `serviceAccounts`,
        /// `acme.directories`), which `ServerConfiguration.resolveSections` reads.
        let apply: Apply?
        /// Settings that this one, given in the environment, takes the place of (a PKCS#11 key by label or by id).
        let displaces: [String]
    }

    static func setting(
        _ key: String, _ environment: String? = nil, _ defaultValue: String = "", _ help: String,
        displaces: [String] = [], apply: Apply? = nil
    ) -> Setting {
        Setting(
            key: key, environment: environment, defaultValue: defaultValue, help: help, apply: apply,
            displaces: displaces)
    }

    public static let settings: [Setting] = [
        setting("listen", "SIGNET_LISTEN", "127.0.0.1:8443", "address and port of the API") { c, v in
            // Port 0 asks for any free port (tests read the one bound).
            let text = try v.text()
            guard let address = HostPort.split(text, wildcardHost: "0.0.0.0", allowingPortZero: true) else {
                throw ConfigurationError("\(v.source) '\(text)' is not host:port")
            }
            (c.host, c.port) = address
        },
        setting("dataDirectory", "SIGNET_DATA_DIR", "./signet-data", "where the ledger (and a development CA) live") {
            $0.dataDirectory = try $1.text()
        },
        setting(
            "database", "SIGNET_DATABASE", "<dataDirectory>/ledger.sqlite",
            "the ledger: a SQLite file, or postgres://USER@HOST:PORT/DB?sslmode=verify-full&sslrootcert=CA.pem"
        ) {
            $0.databasePath = try $1.text()
        },
        setting(
            "databasePasswordFile", "SIGNET_DATABASE_PASSWORD_FILE", "", "PostgreSQL's password, read from this file"
        ) { $0.databasePasswordFile = try $1.text() },
        setting("databasePassword", "SIGNET_DATABASE_PASSWORD", "", "PostgreSQL's password itself; environment only") {
            $0.databasePassword = try $1.text()
        },
        setting(
            "ledgerKeyFile", "SIGNET_LEDGER_KEY_FILE", "<dataDirectory>/ledger.key",
            "the key that seals pending keys in the ledger"
        ) { $0.ledgerKeyFile = try $1.text() },
        setting("ledgerKey", "SIGNET_LEDGER_KEY", "", "that key itself (base64), instead of the file; environment only")
        {
            $0.ledgerKey = try $1.text()
        },
        setting(
            "durability", "SIGNET_DURABILITY", "full",
            "full (survives power loss) or normal (survives a crash of Signet)"
        ) { $0.durability = try $1.choice() },
        setting(
            "log.format", "SIGNET_LOG_FORMAT", "text",
            "text, or json: one object per line (time, level, message, requestId, and fields such as requester and serial)"
        ) { $0.logFormat = try $1.choice() },
        setting("ca.directory", "SIGNET_CA_DIR", "<dataDirectory>/ca", "the CA's certificates and key file") {
            $0.caDirectory = try $1.text()
        },
        setting("ca.passphraseFile", "SIGNET_CA_PASSPHRASE_FILE", "", "the passphrase of an encrypted CA key") {
            $0.caPassphraseFile = try $1.text()
        },
        setting("ca.passphrase", "SIGNET_CA_PASSPHRASE", "", "that passphrase itself; environment only") {
            $0.caPassphrase = try $1.text()
        },
        setting("ca.keyVault.url", "SIGNET_KEYVAULT_URL", "", "the CA key in Azure Key Vault: the vault") {
            $0.keyVault = KeyVaultSettings(
                url: try $1.text(), keyName: "", keyVersion: nil, apiVersion: "7.6", caFile: nil)
        },
        setting("ca.keyVault.keyName", "SIGNET_KEYVAULT_KEY", "", "the key's name") { c, v in
            try c.keyVault(v) { $0.keyName = try v.text() }
        },
        setting("ca.keyVault.keyVersion", "SIGNET_KEYVAULT_KEY_VERSION", "the current version", "a pinned key version")
        {
            c, v in try c.keyVault(v) { $0.keyVersion = try v.text() }
        },
        setting("ca.keyVault.apiVersion", "SIGNET_KEYVAULT_API_VERSION", "7.6", "the Key Vault REST API version") {
            c, v in try c.keyVault(v) { $0.apiVersion = try v.text() }
        },
        setting("ca.keyVault.caFile", "SIGNET_KEYVAULT_CA_FILE", "the system roots", "CA bundle for the vault's TLS") {
            c, v in try c.keyVault(v) { $0.caFile = try v.text() }
        },
        setting(
            "ca.keyVault.maxSignsPerSecond", "SIGNET_KEYVAULT_MAX_SIGNS_PER_SECOND", "unlimited",
            "signatures a second asked of the vault"
        ) { c, v in try c.keyVault(v) { $0.limits.apply(try v.number(), nil, nil) } },
        setting(
            "ca.keyVault.maxConcurrentSigns", "SIGNET_KEYVAULT_MAX_CONCURRENT_SIGNS", "unlimited",
            "signatures in flight"
        ) { c, v in try c.keyVault(v) { $0.limits.apply(nil, try v.number(), nil) } },
        setting(
            "ca.keyVault.maxQueuedSigns", "SIGNET_KEYVAULT_MAX_QUEUED_SIGNS", "unlimited",
            "signatures waiting; more are refused with 503"
        ) { c, v in try c.keyVault(v) { $0.limits.apply(nil, nil, try v.number()) } },
        setting("ca.pkcs11.module", "SIGNET_PKCS11_MODULE", "", "the CA key on a PKCS#11 token: the module") {
            $0.pkcs11 = PKCS11Settings(module: try $1.text(), tokenLabel: "", keyLabel: nil, keyID: nil)
        },
        setting("ca.pkcs11.tokenLabel", "SIGNET_PKCS11_TOKEN", "", "the token's label") { c, v in
            try c.pkcs11(v) { $0.tokenLabel = try v.text() }
        },
        setting(
            "ca.pkcs11.keyLabel", "SIGNET_PKCS11_KEY_LABEL", "", "the key's label (or keyId)",
            displaces: ["ca.pkcs11.keyId"]
        ) { c, v in try c.pkcs11(v) { $0.keyLabel = try v.text() } },
        setting(
            "ca.pkcs11.keyId", "SIGNET_PKCS11_KEY_ID", "", "the key's CKA_ID in hexadecimal (or keyLabel)",
            displaces: ["ca.pkcs11.keyLabel"]
        ) { c, v in try c.pkcs11(v) { $0.keyID = try v.text() } },
        setting("ca.pkcs11.pinFile", "SIGNET_PKCS11_PIN_FILE", "", "a file holding the user PIN") { c, v in
            try c.pkcs11(v) { $0.pinFile = try v.text() }
        },
        setting("ca.pkcs11.pinEnv", "SIGNET_PKCS11_PIN_ENV", "", "the environment variable holding the user PIN") {
            c, v in try c.pkcs11(v) { $0.pinEnvironmentVariable = try v.text() }
        },
        setting(
            "ca.pkcs11.maxSignsPerSecond", "SIGNET_PKCS11_MAX_SIGNS_PER_SECOND", "unlimited",
            "signatures a second asked of the token"
        ) { c, v in try c.pkcs11(v) { $0.limits.apply(try v.number(), nil, nil) } },
        setting(
            "ca.pkcs11.maxConcurrentSigns", "SIGNET_PKCS11_MAX_CONCURRENT_SIGNS", "the sessions", "signatures in flight"
        ) { c, v in try c.pkcs11(v) { $0.limits.apply(nil, try v.number(), nil) } },
        setting(
            "ca.pkcs11.maxQueuedSigns", "SIGNET_PKCS11_MAX_QUEUED_SIGNS", "unlimited",
            "signatures waiting; more are refused with 503"
        ) { c, v in try c.pkcs11(v) { $0.limits.apply(nil, nil, try v.number()) } },
        setting("tls.mode", "SIGNET_TLS", "https", "https, or http when asked") { $0.transport = try $1.choice() },
        setting(
            "tls.hostnames", "SIGNET_TLS_HOSTNAMES", "localhost, 127.0.0.1, ::1",
            "names of the server's own certificate (issued by its CA)"
        ) { $0.tlsHostnames = $1.list() },
        setting("tls.certificate", nil, "", "bring your own server certificate") { $0.tlsCertificate = try $1.text() },
        setting("tls.key", nil, "", "and its key") { $0.tlsKey = try $1.text() },
        setting("tls.clientAuth", nil, "none", "none, optional or require: mutual TLS") {
            $0.clientAuthentication = try $1.choice()
        },
        setting("tls.clientCA", nil, "", "the CA of client certificates (not Signet's own chain)") {
            $0.clientCA = try $1.text()
        },
        setting(
            "tls.allowSelfIssuedClients", nil, "false", "accept Signet's own chain for client certificates (warned)"
        ) { $0.allowSelfIssuedClients = try $1.bool() },
        setting("issuance.defaultDuration", "SIGNET_DEFAULT_DURATION", "2160h", "lifetime when a request names none") {
            $0.defaultLifetime = try $1.lifetime()
        },
        setting(
            "issuance.maxDuration", "SIGNET_MAX_DURATION", "2160h",
            "the longest lifetime; policies without their own inherit it"
        ) { $0.maximumLifetime = try $1.lifetime() },
        setting("tokenCacheSeconds", nil, "1", "how long an API token's lookup is cached") {
            $0.tokenCacheLifetime = .milliseconds(Int64(try $1.nonNegative() * 1000))
        },
        setting("renewalConcurrency", nil, "8", "managed certificates renewed at the same time") { c, v in
            let value: Int = try v.number()
            guard value >= 1 else { throw ConfigurationError("\(v.source) must be at least 1") }
            c.renewalConcurrency = value
        },
        setting(
            "renewalClaimSeconds", "SIGNET_RENEWAL_CLAIM_SECONDS", "60",
            "how long a replica's claim on a renewal lasts if it dies; another then finishes the renewal"
        ) { c, v in
            let value: Int = try v.number()
            guard value >= 3 else { throw ConfigurationError("\(v.source) must be at least 3") }
            c.renewalClaim = .seconds(value)
        },
        setting(
            "limits.issuancesPerSecond", "SIGNET_LIMIT_ISSUANCES_PER_SECOND", "100",
            "issuances a second per caller (0: no limit)"
        ) { $0.limits.issuancesPerSecond = try $1.nonNegative() },
        setting("limits.issuanceBurst", "SIGNET_LIMIT_ISSUANCE_BURST", "1000", "the burst above that rate") {
            $0.limits.issuanceBurst = try $1.nonNegative()
        },
        setting(
            "limits.failedAuthenticationsPerMinute", "SIGNET_LIMIT_FAILED_AUTHENTICATIONS_PER_MINUTE", "60",
            "failed authentications a minute per address"
        ) { $0.limits.failedAuthenticationsPerMinute = try $1.nonNegative() },
        setting(
            "limits.forcedRenewalsPerHour", "SIGNET_LIMIT_FORCED_RENEWALS_PER_HOUR", "10",
            "POST …/renew an hour per managed certificate"
        ) { $0.limits.forcedRenewalsPerHour = try $1.nonNegative() },
        setting(
            "limits.probeCacheSeconds", "SIGNET_LIMIT_PROBE_CACHE_SECONDS", "2",
            "how old /readyz and /metrics answers may be"
        ) { $0.limits.probeCacheSeconds = try $1.nonNegative() },
        setting("clientCertificates.subject", nil, "", "a client certificate identity: its full subject DN (or uri)"),
        setting("clientCertificates.uri", nil, "", "or its URI SAN"),
        setting("clientCertificates.commonName", nil, "", "refused: a common name alone is not an identity"),
        setting("clientCertificates.issuer", nil, "", "the subject DN of the CA that must have issued it"),
        setting("clientCertificates.allow", nil, "", "its name patterns"),
        setting("clientCertificates.maxDuration", nil, "issuance.maxDuration", "its longest lifetime"),
        setting("clientCertificates.profiles", nil, "[server]", "its profiles"),
        setting("clientCertificates.targets", nil, "[]", "where its managed certificates may be delivered"),
        setting("clusters.name", nil, "", "a cluster managed certificates are delivered to"),
        setting("clusters.kubeconfig", nil, "", "its kubeconfig (or inCluster)"),
        setting("clusters.context", nil, "the current context", "the kubeconfig's context"),
        setting("clusters.inCluster", nil, "false", "the cluster Signet runs in"),
        setting("clusters.gateway", nil, "", "host:port of its gateway, probed after each delivery"),
        setting("clusters.allowPlainHTTP", nil, "false", "accept an http:// API server"),
        setting("serviceAccounts.cluster", nil, "", "the cluster whose service-account tokens are accepted"),
        setting("serviceAccounts.audience", nil, "signet", "the audience those tokens must have"),
        setting("serviceAccounts.validation", nil, "tokenreview", "tokenreview, or jwks"),
        setting("serviceAccounts.issuer", nil, "", "the tokens' issuer (jwks)"),
        setting(
            "serviceAccounts.controllers", nil, "[]", "namespace/name of accounts that may act for other namespaces"),
        setting("serviceAccounts.auditors", nil, "[]", "namespace/name of accounts that read everything"),
        setting("serviceAccounts.namespaces.namespace", nil, "", "a namespace's policy: the namespace"),
        setting("serviceAccounts.namespaces.allow", nil, "", "its name patterns (SPIFFE IDs of that namespace only)"),
        setting("serviceAccounts.namespaces.maxDuration", nil, "issuance.maxDuration", "its longest lifetime"),
        setting("serviceAccounts.namespaces.profiles", nil, "[server]", "its profiles"),
        setting("acme.baseURL", nil, "https://<listen>", "the URL ACME clients reach Signet at") {
            $0.acme.baseURL = try $1.baseURL()
        },
        setting("acme.httpPort", nil, "80", "the port http-01 validations connect to") {
            $0.acme.httpPort = try $1.port()
        },
        setting("acme.tlsPort", nil, "443", "the port tls-alpn-01 validations connect to") {
            $0.acme.tlsPort = try $1.port()
        },
        setting("acme.resolver", nil, "the system's", "the DNS server dns-01 asks") { c, v in
            let text = try v.text()
            guard let (host, _) = HostPort.split(text), IPAddress(host)?.bytes.count == 4 else {
                throw ConfigurationError("\(v.source) must be an IPv4 address and port (10.0.0.10:53), not '\(text)'")
            }
            c.acme.resolver = text
        },
        setting("acme.validationTimeoutSeconds", nil, "10", "how long one validation may take") { c, v in
            let seconds: Double = try v.number()
            guard seconds > 0, seconds <= 120 else { throw ConfigurationError("\(v.source) must be in (0, 120]") }
            c.acme.validationTimeout = .milliseconds(Int64(seconds * 1000))
        },
        setting("acme.directories.name", nil, "", "an ACME directory: its name in /acme/<name>/directory"),
        setting("acme.directories.allow", nil, "", "its name patterns"),
        setting("acme.directories.challenges", nil, "[http-01, dns-01, tls-alpn-01]", "the challenges it offers"),
        setting("acme.directories.maxDuration", nil, "issuance.maxDuration", "its longest lifetime"),
        setting("acme.directories.defaultDuration", nil, "its maxDuration", "its lifetime when an order names none"),
        setting("acme.directories.profiles", nil, "[server]", "the profiles it offers"),
        setting("acme.directories.externalAccountRequired", nil, "false", "accounts need an EAB key"),
        setting("acme.directories.trustedNames", nil, "[]", "names authorized without a challenge (audited)"),
        setting("acme.directories.alwaysValid", nil, "false", "every challenge passes: tests and benchmarks only"),
        setting("acme.directories.website", nil, "", "meta.website"),
        setting("acme.directories.termsOfService", nil, "", "meta.termsOfService"),
        setting("acme.directories.caaIdentities", nil, "[]", "meta.caaIdentities"),
        setting(
            "crl.validity", nil, "7d", "nextUpdate - thisUpdate; re-signed at half, and within seconds of a revocation"
        ) {
            $0.crlValidity = try $1.lifetime(atLeast: .seconds(60), "; a CRL is re-signed when half of it has passed")
        },
        setting("crl.baseURL", nil, "", "public URL of /crl/: cRLDistributionPoints in new certificates") {
            $0.crlBaseURL = try $1.baseURL()
        },
        setting("crl.readinessMargin", nil, "1d", "/readyz fails when a CRL is closer than this to its nextUpdate") {
            $0.crlReadinessMargin = try $1.lifetime()
        },
        setting("crl.rootCRL", nil, "", "the root's CRL, made offline with signet ca crl") {
            $0.rootCRLFile = try $1.text()
        },
        setting("ocsp.validity", nil, "1d", "nextUpdate - thisUpdate of OCSP answers") {
            $0.ocspValidity = try $1.lifetime(atLeast: .seconds(60))
        },
        setting("ocsp.responderLifetime", nil, "4d", "the delegated responder certificate's lifetime") {
            $0.ocspResponderLifetime = try $1.lifetime()
        },
        setting("ocsp.baseURL", nil, "", "public URL of /ocsp: authorityInfoAccess in new certificates") {
            $0.ocspBaseURL = try $1.baseURL()
        },
    ]

    /// The keys a configuration file may have, by parent (`""` for the top level): every setting's path, and the
    /// sections on the way to it. Settings read from the environment only are not file keys.
    static var knownKeys: [String: Set<String>] {
        var known: [String: Set<String>] = [:]
        for setting in settings where !environmentOnly.contains(setting.key) {
            let parts = setting.key.split(separator: ".").map(String.init)
            for depth in parts.indices {
                known[parts[..<depth].joined(separator: "."), default: []].insert(parts[depth])
            }
        }
        return known
    }

    static let environmentOnly: Set<String> = ["ledgerKey", "ca.passphrase", "databasePassword"]

    /// The README's settings reference: one row per setting.
    public static var markdown: String {
        var rows = ["| setting | environment | default | what it is |", "|---|---|---|---|"]
        for setting in settings {
            let key = environmentOnly.contains(setting.key) ? "(environment only)" : "`\(setting.key)`"
            rows.append(
                "| \(key) | \(setting.environment.map { "`\($0)`" } ?? "") | \(setting.defaultValue.isEmpty ? "" : "`\(setting.defaultValue)`") | \(setting.help) |"
            )
        }
        return rows.joined(separator: "\n")
    }
}
