import Logging
import NIOPosix
import PostgresNIO

/// The PostgreSQL ledger's schema, one migration per released change (never edit a shipped one: add the next).
///
/// Several replicas may start at once: each takes the same transaction-scoped advisory lock before reading which
/// migrations are applied, so one applies them and the others wait, then find nothing left to do. The tables are those
/// of the SQLite ledger (`LedgerSchema`), with PostgreSQL's types: names as `text[]`, DER as `bytea`, times as the same
/// integer seconds or milliseconds, so that a ledger moves between the two backends row for row.
enum PostgresSchema {
    /// `pg_advisory_xact_lock`'s key: "signet" in ASCII, so it does not collide with another application's lock.
    static let lockKey: Int64 = 0x7369_676E_6574

    static let migrations: [(name: String, sql: [String])] = [
        (
            "v1: certificates, names, tokens, audit events, managed certificates, CRLs",
            [
                """
                CREATE TABLE certificates (
                    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    serial TEXT NOT NULL UNIQUE,
                    issuer_key_id TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    dns_names TEXT[] NOT NULL,
                    ip_addresses TEXT[] NOT NULL,
                    uris TEXT[] NOT NULL,
                    public_key_sha256 TEXT NOT NULL,
                    csr_sha256 TEXT NOT NULL,
                    profile TEXT NOT NULL,
                    not_before BIGINT NOT NULL,
                    not_after BIGINT NOT NULL,
                    status TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
                    revoked_at BIGINT,
                    revocation_reason TEXT,
                    requester TEXT NOT NULL,
                    issued_at BIGINT NOT NULL,
                    der BYTEA NOT NULL,
                    signer_key_version TEXT,
                    signer_request_id TEXT,
                    CHECK (not_before < not_after),
                    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
                )
                """,
                "CREATE INDEX certificates_by_not_after ON certificates (not_after)",
                "CREATE INDEX certificates_by_status_id ON certificates (status, id, not_after)",
                // (issued_at, id): an issue-time bound becomes an id bound with one lookup (certificates(matching:)).
                "CREATE INDEX certificates_by_issued_at ON certificates (issued_at, id)",
                "CREATE INDEX certificates_by_requester ON certificates (requester, id)",
                "CREATE INDEX certificates_by_public_key ON certificates (public_key_sha256)",
                """
                CREATE INDEX certificates_revoked_by_issuer ON certificates (issuer_key_id, not_after)
                    WHERE status = 'revoked'
                """,
                // One row per name, so "who holds a certificate for this host" is an index lookup, wildcards included.
                """
                CREATE TABLE certificate_names (
                    certificate_id BIGINT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
                    name TEXT NOT NULL,
                    PRIMARY KEY (name, certificate_id)
                )
                """,
                """
                CREATE TABLE tokens (
                    name TEXT PRIMARY KEY,
                    secret_sha256 TEXT NOT NULL UNIQUE,
                    allowed_names TEXT[] NOT NULL,
                    allowed_profiles TEXT[] NOT NULL,
                    max_lifetime_seconds BIGINT NOT NULL,
                    created_at BIGINT NOT NULL,
                    revoked_at BIGINT,
                    allowed_targets TEXT[] NOT NULL,
                    auditor BOOLEAN NOT NULL DEFAULT false,
                    administrator BOOLEAN NOT NULL DEFAULT false
                )
                """,
                """
                CREATE TABLE audit_events (
                    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    at_ms BIGINT NOT NULL,
                    actor TEXT NOT NULL,
                    action TEXT NOT NULL,
                    outcome TEXT NOT NULL,
                    subject TEXT,
                    names TEXT[],
                    reason TEXT
                )
                """,
                "CREATE INDEX audit_events_by_time ON audit_events (at_ms)",
                """
                CREATE TABLE crls (
                    issuer_key_id TEXT PRIMARY KEY,
                    number BIGINT NOT NULL,
                    this_update_ms BIGINT NOT NULL,
                    next_update_ms BIGINT NOT NULL,
                    entries BIGINT NOT NULL,
                    der BYTEA NOT NULL
                )
                """,
            ]
        ),
        (
            "v2: managed certificates",
            [
                // The spec is JSON; its target is lifted into generated columns so that one Secret has one owner by a
                // unique index (races between replicas included) and lookups by target are index searches.
                // `pending_key` is sealed with the ledger key: never plaintext at rest.
                """
                CREATE TABLE managed_certificates (
                    name TEXT PRIMARY KEY,
                    owner TEXT NOT NULL,
                    spec JSONB NOT NULL,
                    target_cluster TEXT GENERATED ALWAYS AS (spec -> 'target' ->> 'cluster') STORED,
                    target_namespace TEXT GENERATED ALWAYS AS (spec -> 'target' ->> 'namespace') STORED,
                    target_secret TEXT GENERATED ALWAYS AS (spec -> 'target' ->> 'secretName') STORED,
                    generation BIGINT NOT NULL,
                    created_ms BIGINT NOT NULL,
                    updated_ms BIGINT NOT NULL,
                    next_attempt_ms BIGINT NOT NULL,
                    serial TEXT,
                    not_before BIGINT,
                    not_after BIGINT,
                    renewal_ms BIGINT,
                    issued_generation BIGINT,
                    delivered_ms BIGINT,
                    secret_resource_version TEXT,
                    attempts BIGINT NOT NULL DEFAULT 0,
                    last_error TEXT,
                    last_error_reason TEXT,
                    last_attempt_ms BIGINT,
                    pending_key TEXT,
                    pending_key_sha256 TEXT,
                    pending_generation BIGINT,
                    probe_ms BIGINT,
                    probe_serial TEXT,
                    probe_error TEXT,
                    CHECK ((pending_key IS NULL) = (pending_key_sha256 IS NULL))
                )
                """,
                "CREATE INDEX managed_certificates_by_next_attempt ON managed_certificates (next_attempt_ms)",
                """
                CREATE UNIQUE INDEX managed_certificates_by_target
                    ON managed_certificates (target_cluster, target_namespace, target_secret)
                """,
                "CREATE INDEX managed_certificates_by_serial ON managed_certificates (serial)",
            ]
        ),
        (
            "v3: ACME nonces, accounts, orders, authorizations, EAB keys, renewal information",
            [
                // The nonce key (acme_settings) is shared by every replica, so a nonce one hands out is accepted by any;
                // acme_nonces holds the spent ones until they expire, and the primary key makes each one single use.
                "CREATE TABLE acme_settings (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
                "CREATE TABLE acme_nonces (value TEXT PRIMARY KEY, expires_ms BIGINT NOT NULL)",
                "CREATE INDEX acme_nonces_by_expiry ON acme_nonces (expires_ms)",
                // The EAB HMAC key is sealed with the ledger key: its MAC must be checked, so a hash will not do.
                """
                CREATE TABLE acme_eab_keys (
                    key_id TEXT PRIMARY KEY,
                    directory TEXT NOT NULL,
                    label TEXT NOT NULL,
                    allowed_names TEXT[] NOT NULL,
                    sealed_mac_key TEXT NOT NULL,
                    created_at_ms BIGINT NOT NULL,
                    revoked_at_ms BIGINT
                )
                """,
                """
                CREATE TABLE acme_accounts (
                    id TEXT PRIMARY KEY,
                    directory TEXT NOT NULL,
                    thumbprint TEXT NOT NULL,
                    jwk TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('valid', 'deactivated', 'revoked')),
                    contact TEXT[] NOT NULL,
                    eab_key_id TEXT REFERENCES acme_eab_keys (key_id),
                    created_at_ms BIGINT NOT NULL,
                    UNIQUE (directory, thumbprint)
                )
                """,
                // Challenges live inside their authorization (JSON), read and written with it.
                """
                CREATE TABLE acme_authorizations (
                    id TEXT PRIMARY KEY,
                    account_id TEXT NOT NULL REFERENCES acme_accounts (id),
                    identifier_type TEXT NOT NULL CHECK (identifier_type IN ('dns', 'ip')),
                    identifier_value TEXT NOT NULL,
                    wildcard BOOLEAN NOT NULL,
                    status TEXT NOT NULL
                        CHECK (status IN ('pending', 'valid', 'invalid', 'deactivated', 'expired', 'revoked')),
                    expires_ms BIGINT NOT NULL,
                    trusted BOOLEAN NOT NULL DEFAULT false,
                    challenges JSONB NOT NULL
                )
                """,
                """
                CREATE INDEX acme_authorizations_for_reuse
                    ON acme_authorizations (account_id, identifier_value, status, expires_ms)
                """,
                "CREATE INDEX acme_authorizations_by_expiry ON acme_authorizations (expires_ms)",
                """
                CREATE TABLE acme_orders (
                    id TEXT PRIMARY KEY,
                    account_id TEXT NOT NULL REFERENCES acme_accounts (id),
                    status TEXT NOT NULL CHECK (status IN ('pending', 'ready', 'processing', 'valid', 'invalid')),
                    identifiers JSONB NOT NULL,
                    authorizations TEXT[] NOT NULL,
                    not_before_ms BIGINT,
                    not_after_ms BIGINT,
                    profile TEXT,
                    replaces TEXT,
                    expires_ms BIGINT NOT NULL,
                    certificate_serial TEXT,
                    error JSONB,
                    created_at_ms BIGINT NOT NULL
                )
                """,
                "CREATE INDEX acme_orders_by_account ON acme_orders (account_id, created_at_ms)",
                "CREATE INDEX acme_orders_by_replaces ON acme_orders (replaces) WHERE replaces IS NOT NULL",
                "CREATE INDEX acme_orders_by_expiry ON acme_orders (expires_ms)",
                "CREATE INDEX acme_orders_by_authorization ON acme_orders USING GIN (authorizations)",
                """
                CREATE TABLE acme_renewal_advances (
                    serial TEXT PRIMARY KEY,
                    advanced_at_ms BIGINT NOT NULL
                )
                """,
            ]
        ),
        (
            "v4: renewal claims",
            [
                // Until when a replica holds a due renewal; an expired claim is anyone's (claimDueManagedCertificates).
                "ALTER TABLE managed_certificates ADD COLUMN claimed_until_ms BIGINT"
            ]
        ),
        (
            "v5: leases",
            [
                // Named leases between replicas (LeaseStore): who holds each, and until when.
                "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms BIGINT NOT NULL)"
            ]
        ),
    ]

    /// Applies the migrations not yet applied, under the advisory lock, on a connection of its own; returns how many
    /// this call applied.
    @discardableResult
    static func migrate(_ settings: PostgresConnectionSettings, logger: Logger) async throws -> Int {
        let connection = try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.next(), configuration: try settings.connectionConfiguration(),
            id: 0, logger: logger
        ).get()
        do {
            let applied = try await migrate(on: connection, logger: logger)
            try await connection.close()
            return applied
        } catch {
            try? await connection.close()
            throw error
        }
    }

    private static func migrate(on connection: PostgresConnection, logger: Logger) async throws -> Int {
        try await connection.query("BEGIN", logger: logger)
        do {
            try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS signet_migrations (
                    name TEXT PRIMARY KEY,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )
                """, logger: logger)
            var applied = Set<String>()
            for try await name in try await connection.query("SELECT name FROM signet_migrations", logger: logger)
                .decode(String.self)
            {
                applied.insert(name)
            }
            var count = 0
            for migration in migrations where !applied.contains(migration.name) {
                for statement in migration.sql {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO signet_migrations (name) VALUES (\(migration.name))", logger: logger)
                logger.info("ledger migration applied", metadata: ["migration": "\(migration.name)"])
                count += 1
            }
            try await connection.query("COMMIT", logger: logger)
            return count
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }
}
