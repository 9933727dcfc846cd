/// Every setting of `signet serve`, once: its YAML key, its environment variable, its default and what it does. The
/// configuration file's known keys come from here (an unknown key is an error), and the README's settings reference is
/// checked against it by a test, so none of the three can forget a setting the others have.
public enum ConfigurationReference {
    public struct Setting: Sendable {
        /// The dotted YAML path; entries of a list are under the list's key (`clusters.name`).
        public let key: String
        public let environment: String?
        public let defaultValue: String
        public let help: String
    }

    static func setting(_ key: String, _ environment: String? = nil, _ defaultValue: String = "", _ help: String)
        -> Setting
    {
        Setting(key: key, environment: environment, defaultValue: defaultValue, help: help)
    }

    public static let settings: [Setting] = [
        setting("listen", "SIGNET_LISTEN", "127.0.0.1:8443", "address and port of the API"),
        setting("dataDirectory", "SIGNET_DATA_DIR", "./signet-data", "where the ledger (and a development CA) live"),
        setting("database", "SIGNET_DATABASE", "<dataDirectory>/ledger.sqlite", "the SQLite ledger"),
        setting(
            "ledgerKeyFile", "SIGNET_LEDGER_KEY_FILE", "<dataDirectory>/ledger.key",
            "the key that seals pending keys in the ledger"),
        setting(
            "ledgerKey", "SIGNET_LEDGER_KEY", "", "that key itself (base64), instead of the file; environment only"),
        setting(
            "durability", "SIGNET_DURABILITY", "full",
            "full (survives power loss) or normal (survives a crash of Signet)"),
        setting("ca.directory", "SIGNET_CA_DIR", "<dataDirectory>/ca", "the CA's certificates and key file"),
        setting("ca.passphraseFile", "SIGNET_CA_PASSPHRASE_FILE", "", "the passphrase of an encrypted CA key"),
        setting("ca.passphrase", "SIGNET_CA_PASSPHRASE", "", "that passphrase itself; environment only"),
        setting("ca.keyVault.url", "SIGNET_KEYVAULT_URL", "", "the CA key in Azure Key Vault: the vault"),
        setting("ca.keyVault.keyName", "SIGNET_KEYVAULT_KEY", "", "the key's name"),
        setting("ca.keyVault.keyVersion", "SIGNET_KEYVAULT_KEY_VERSION", "the current version", "a pinned key version"),
        setting("ca.keyVault.apiVersion", "SIGNET_KEYVAULT_API_VERSION", "7.6", "the Key Vault REST API version"),
        setting("ca.keyVault.caFile", "SIGNET_KEYVAULT_CA_FILE", "the system roots", "CA bundle for the vault's TLS"),
        setting(
            "ca.keyVault.maxSignsPerSecond", "SIGNET_KEYVAULT_MAX_SIGNS_PER_SECOND", "unlimited",
            "signatures a second asked of the vault"),
        setting(
            "ca.keyVault.maxConcurrentSigns", "SIGNET_KEYVAULT_MAX_CONCURRENT_SIGNS", "unlimited",
            "signatures in flight"),
        setting(
            "ca.keyVault.maxQueuedSigns", "SIGNET_KEYVAULT_MAX_QUEUED_SIGNS", "unlimited",
            "signatures waiting; more are refused with 503"),
        setting("ca.pkcs11.module", "SIGNET_PKCS11_MODULE", "", "the CA key on a PKCS#11 token: the module"),
        setting("ca.pkcs11.tokenLabel", "SIGNET_PKCS11_TOKEN", "", "the token's label"),
        setting("ca.pkcs11.keyLabel", "SIGNET_PKCS11_KEY_LABEL", "", "the key's label (or keyId)"),
        setting("ca.pkcs11.keyId", "SIGNET_PKCS11_KEY_ID", "", "the key's CKA_ID in hexadecimal (or keyLabel)"),
        setting("ca.pkcs11.pinFile", "SIGNET_PKCS11_PIN_FILE", "", "a file holding the user PIN"),
        setting("ca.pkcs11.pinEnv", "SIGNET_PKCS11_PIN_ENV", "", "the environment variable holding the user PIN"),
        setting(
            "ca.pkcs11.maxSignsPerSecond", "SIGNET_PKCS11_MAX_SIGNS_PER_SECOND", "unlimited",
            "signatures a second asked of the token"),
        setting(
            "ca.pkcs11.maxConcurrentSigns", "SIGNET_PKCS11_MAX_CONCURRENT_SIGNS", "the sessions", "signatures in flight"
        ),
        setting(
            "ca.pkcs11.maxQueuedSigns", "SIGNET_PKCS11_MAX_QUEUED_SIGNS", "unlimited",
            "signatures waiting; more are refused with 503"),
        setting("tls.mode", "SIGNET_TLS", "https", "https, or http when asked"),
        setting(
            "tls.hostnames", "SIGNET_TLS_HOSTNAMES", "localhost, 127.0.0.1",
            "names of the server's own certificate (issued by its CA)"),
        setting("tls.certificate", nil, "", "bring your own server certificate"),
        setting("tls.key", nil, "", "and its key"),
        setting("tls.clientAuth", nil, "none", "none, optional or require: mutual TLS"),
        setting("tls.clientCA", nil, "", "the CA of client certificates (not Signet's own chain)"),
        setting(
            "tls.allowSelfIssuedClients", nil, "false", "accept Signet's own chain for client certificates (warned)"),
        setting("issuance.defaultDuration", "SIGNET_DEFAULT_DURATION", "2160h", "lifetime when a request names none"),
        setting(
            "issuance.maxDuration", "SIGNET_MAX_DURATION", "2160h",
            "the longest lifetime; policies without their own inherit it"),
        setting("tokenCacheSeconds", nil, "1", "how long an API token's lookup is cached"),
        setting("renewalConcurrency", nil, "8", "managed certificates renewed at the same time"),
        setting(
            "limits.issuancesPerSecond", "SIGNET_LIMIT_ISSUANCES_PER_SECOND", "100",
            "issuances a second per caller (0: no limit)"),
        setting("limits.issuanceBurst", "SIGNET_LIMIT_ISSUANCE_BURST", "1000", "the burst above that rate"),
        setting(
            "limits.failedAuthenticationsPerMinute", "SIGNET_LIMIT_FAILED_AUTHENTICATIONS_PER_MINUTE", "60",
            "failed authentications a minute per address"),
        setting(
            "limits.forcedRenewalsPerHour", "SIGNET_LIMIT_FORCED_RENEWALS_PER_HOUR", "10",
            "POST …/renew an hour per managed certificate"),
        setting(
            "limits.probeCacheSeconds", "SIGNET_LIMIT_PROBE_CACHE_SECONDS", "2",
            "how old /readyz and /metrics answers may be"),
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
        setting("acme.baseURL", nil, "https://<listen>", "the URL ACME clients reach Signet at"),
        setting("acme.httpPort", nil, "80", "the port http-01 validations connect to"),
        setting("acme.tlsPort", nil, "443", "the port tls-alpn-01 validations connect to"),
        setting("acme.resolver", nil, "the system's", "the DNS server dns-01 asks"),
        setting("acme.validationTimeoutSeconds", nil, "10", "how long one validation may take"),
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
            "crl.validity", nil, "7d", "nextUpdate - thisUpdate; re-signed at half, and within seconds of a revocation"),
        setting("crl.baseURL", nil, "", "public URL of /crl/: cRLDistributionPoints in new certificates"),
        setting("crl.readinessMargin", nil, "1d", "/readyz fails when a CRL is closer than this to its nextUpdate"),
        setting("crl.rootCRL", nil, "", "the root's CRL, made offline with signet ca crl"),
        setting("ocsp.validity", nil, "1d", "nextUpdate - thisUpdate of OCSP answers"),
        setting("ocsp.responderLifetime", nil, "4d", "the delegated responder certificate's lifetime"),
        setting("ocsp.baseURL", nil, "", "public URL of /ocsp: authorityInfoAccess in new certificates"),
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

    static let environmentOnly: Set<String> = ["ledgerKey", "ca.passphrase"]

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
