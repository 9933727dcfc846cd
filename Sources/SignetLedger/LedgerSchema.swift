import GRDB

/// The ledger's schema, one migration per released change. Never edit a shipped migration: add the next one.
enum LedgerSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: certificates, names, tokens, audit events") { db in
            // `id` orders issuance (newest first) and is the pagination cursor; `serial` is the public identity.
            // `issued_at` never decreases in `id` order (see CertificateLedger.record), so time ranges map to id ranges.
            // Times are Unix seconds (certificate fields) or milliseconds (events), so comparisons are integer
            // comparisons on indexes.
            try db.execute(
                sql: """
                    CREATE TABLE certificates (
                        id INTEGER PRIMARY KEY,
                        serial TEXT NOT NULL UNIQUE,
                        issuer_key_id TEXT NOT NULL,
                        subject TEXT NOT NULL,
                        dns_names TEXT NOT NULL,
                        ip_addresses TEXT NOT NULL,
                        public_key_sha256 TEXT NOT NULL,
                        csr_sha256 TEXT NOT NULL,
                        profile TEXT NOT NULL,
                        not_before INTEGER NOT NULL,
                        not_after INTEGER NOT NULL,
                        status TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
                        revoked_at INTEGER,
                        revocation_reason TEXT,
                        requester TEXT NOT NULL,
                        issued_at INTEGER NOT NULL,
                        der BLOB NOT NULL,
                        CHECK (not_before < not_after),
                        CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
                    ) STRICT;
                    CREATE INDEX certificates_by_not_after ON certificates (not_after);
                    CREATE INDEX certificates_by_status_not_after ON certificates (status, not_after);
                    -- Newest-first listings by status scan this index alone (it covers not_after), never the table.
                    CREATE INDEX certificates_by_status_id ON certificates (status, id, not_after);
                    CREATE INDEX certificates_by_issued_at ON certificates (issued_at);
                    CREATE INDEX certificates_by_requester ON certificates (requester, id);

                    -- One row per name a certificate carries (DNS names and IP addresses as text), so "who holds a
                    -- certificate for this host" is an index lookup, wildcards included.
                    CREATE TABLE certificate_names (
                        certificate_id INTEGER NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
                        name TEXT NOT NULL,
                        PRIMARY KEY (name, certificate_id)
                    ) STRICT, WITHOUT ROWID;

                    CREATE TABLE tokens (
                        name TEXT PRIMARY KEY,
                        secret_sha256 TEXT NOT NULL UNIQUE,
                        allowed_names TEXT NOT NULL,
                        allowed_profiles TEXT NOT NULL,
                        max_lifetime_seconds INTEGER NOT NULL,
                        created_at INTEGER NOT NULL,
                        revoked_at INTEGER
                    ) STRICT;

                    CREATE TABLE audit_events (
                        id INTEGER PRIMARY KEY,
                        at_ms INTEGER NOT NULL,
                        actor TEXT NOT NULL,
                        action TEXT NOT NULL,
                        outcome TEXT NOT NULL,
                        subject TEXT,
                        names TEXT,
                        reason TEXT
                    ) STRICT;
                    CREATE INDEX audit_events_by_time ON audit_events (at_ms);
                    """)
        }
        migrator.registerMigration("v2: signer receipts") { db in
            // For a remote signer, the key version and the signer's request id of the signature: an auditor joins
            // these with the signer's own logs (Key Vault's x-ms-request-id). NULL for file keys.
            try db.execute(
                sql: """
                    ALTER TABLE certificates ADD COLUMN signer_key_version TEXT;
                    ALTER TABLE certificates ADD COLUMN signer_request_id TEXT;
                    """)
        }
        migrator.registerMigration("v3: managed certificates, delivery targets of tokens") { db in
            // A managed certificate is its spec (JSON, bumped `generation` on every change) and its renewal state.
            // `next_attempt_ms` is the one thing the scheduler reads: due rows are an index range.
            // `pending_key` holds the key of a renewal in progress from before its certificate is signed until the
            // Secret is written. After a crash the renewal resumes with it: the ledger is searched for a certificate
            // with that public key before a new one is signed, so one renewal never yields two certificates.
            try db.execute(
                sql: """
                    ALTER TABLE tokens ADD COLUMN allowed_targets TEXT NOT NULL DEFAULT '[]';

                    CREATE TABLE managed_certificates (
                        name TEXT PRIMARY KEY,
                        owner TEXT NOT NULL,
                        spec TEXT NOT NULL,
                        generation INTEGER NOT NULL,
                        created_ms INTEGER NOT NULL,
                        updated_ms INTEGER NOT NULL,
                        next_attempt_ms INTEGER NOT NULL,
                        serial TEXT,
                        not_before INTEGER,
                        not_after INTEGER,
                        renewal_ms INTEGER,
                        issued_generation INTEGER,
                        delivered_ms INTEGER,
                        secret_resource_version TEXT,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        last_error TEXT,
                        last_attempt_ms INTEGER,
                        pending_key TEXT,
                        pending_key_sha256 TEXT,
                        pending_generation INTEGER,
                        probe_ms INTEGER,
                        probe_serial TEXT,
                        probe_error TEXT,
                        CHECK ((pending_key IS NULL) = (pending_key_sha256 IS NULL))
                    ) STRICT;
                    CREATE INDEX managed_certificates_by_next_attempt ON managed_certificates (next_attempt_ms);
                    CREATE INDEX certificates_by_public_key ON certificates (public_key_sha256);
                    """)
        }
        migrator.registerMigration("v4: one managed certificate per Secret") { db in
            // Two managed certificates writing one Secret would replace each other's certificate on every renewal.
            // The unique index enforces one owner (races included) and makes lookups by target an index search.
            let duplicates = try Row.fetchAll(
                db,
                sql: """
                    SELECT group_concat(name, ', ') AS names FROM managed_certificates
                    GROUP BY \(ManagedTargetColumns.cluster), \(ManagedTargetColumns.namespace), \(ManagedTargetColumns.secretName) HAVING count(*) > 1
                    """)
            guard duplicates.isEmpty else {
                let groups = duplicates.map { $0["names"] as String }.joined(separator: "; ")
                throw LedgerError.corrupt(
                    "managed certificates share a target Secret (\(groups)); delete all but one of each group with an older Signet, then upgrade"
                )
            }
            try db.execute(
                sql: """
                    CREATE UNIQUE INDEX managed_certificates_by_target ON managed_certificates
                        (\(ManagedTargetColumns.cluster), \(ManagedTargetColumns.namespace), \(ManagedTargetColumns.secretName))
                    """)
        }
        migrator.registerMigration("v5: why a renewal failed") { db in
            // A machine-readable reason beside last_error (`Unauthorized` when the owner's credential no longer allows
            // the certificate), so the status can say why without parsing text.
            try db.execute(sql: "ALTER TABLE managed_certificates ADD COLUMN last_error_reason TEXT")
        }
        migrator.registerMigration("v6: auditor tokens") { db in
            // Reading every tenant's issuances is a role of its own. Tokens made without names before it existed were
            // the auditors' tokens, and stay so.
            try db.execute(
                sql: """
                    ALTER TABLE tokens ADD COLUMN auditor INTEGER NOT NULL DEFAULT 0 CHECK (auditor IN (0, 1));
                    UPDATE tokens SET auditor = 1 WHERE allowed_names = '[]';
                    """)
        }
        migrator.registerMigration("v7: ACME nonces") { db in
            // Anti-replay nonces (RFC 8555 §6.5), single use: a nonce is valid while its row exists and unexpired, and
            // using it deletes it. In the database, so they survive a restart and any replica on the same database
            // accepts what another handed out.
            try db.execute(
                sql: """
                    CREATE TABLE acme_nonces (
                        value TEXT PRIMARY KEY,
                        expires_ms INTEGER NOT NULL
                    ) STRICT, WITHOUT ROWID;
                    CREATE INDEX acme_nonces_by_expiry ON acme_nonces (expires_ms);
                    """)
        }
        migrator.registerMigration("v8: ACME accounts, orders, authorizations, EAB keys, renewal information") { db in
            // Nonces are now stamped by the ledger's nonce key (acme_settings) and need no row until they are used:
            // acme_nonces keeps the spent ones until they expire, so a second use is a primary-key conflict, whichever
            // replica answers. Nonces handed out under v7 are not stamped; clients retry a badNonce.
            try db.execute(
                sql: """
                    DELETE FROM acme_nonces;
                    CREATE TABLE acme_settings (
                        name TEXT PRIMARY KEY,
                        value BLOB NOT NULL
                    ) STRICT, WITHOUT ROWID;

                    -- External Account Binding keys: the HMAC key sealed with the ledger key (its MAC must be checked, so
                    -- a hash will not do), the directory it binds to, a label recorded in requesters, and the names
                    -- accounts bound with it may order (empty: the directory's).
                    CREATE TABLE acme_eab_keys (
                        key_id TEXT PRIMARY KEY,
                        directory TEXT NOT NULL,
                        label TEXT NOT NULL,
                        allowed_names TEXT NOT NULL,
                        sealed_mac_key TEXT NOT NULL,
                        created_at_ms INTEGER NOT NULL,
                        revoked_at_ms INTEGER
                    ) STRICT;

                    CREATE TABLE acme_accounts (
                        id TEXT PRIMARY KEY,
                        directory TEXT NOT NULL,
                        thumbprint TEXT NOT NULL,
                        jwk TEXT NOT NULL,
                        status TEXT NOT NULL CHECK (status IN ('valid', 'deactivated', 'revoked')),
                        contact TEXT NOT NULL,
                        eab_key_id TEXT REFERENCES acme_eab_keys (key_id),
                        created_at_ms INTEGER NOT NULL,
                        UNIQUE (directory, thumbprint)
                    ) STRICT;

                    -- Challenges live inside their authorization (JSON): they are read and written with it.
                    CREATE TABLE acme_authorizations (
                        id TEXT PRIMARY KEY,
                        account_id TEXT NOT NULL REFERENCES acme_accounts (id),
                        identifier_type TEXT NOT NULL CHECK (identifier_type IN ('dns', 'ip')),
                        identifier_value TEXT NOT NULL,
                        wildcard INTEGER NOT NULL CHECK (wildcard IN (0, 1)),
                        status TEXT NOT NULL CHECK (status IN ('pending', 'valid', 'invalid', 'deactivated', 'expired', 'revoked')),
                        expires_ms INTEGER NOT NULL,
                        trusted INTEGER NOT NULL DEFAULT 0 CHECK (trusted IN (0, 1)),
                        challenges TEXT NOT NULL
                    ) STRICT;
                    CREATE INDEX acme_authorizations_for_reuse ON acme_authorizations (account_id, identifier_value, status, expires_ms);
                    CREATE INDEX acme_authorizations_by_expiry ON acme_authorizations (expires_ms);

                    CREATE TABLE acme_orders (
                        id TEXT PRIMARY KEY,
                        account_id TEXT NOT NULL REFERENCES acme_accounts (id),
                        status TEXT NOT NULL CHECK (status IN ('pending', 'ready', 'processing', 'valid', 'invalid')),
                        identifiers TEXT NOT NULL,
                        authorizations TEXT NOT NULL,
                        not_before_ms INTEGER,
                        not_after_ms INTEGER,
                        profile TEXT,
                        replaces TEXT,
                        expires_ms INTEGER NOT NULL,
                        certificate_serial TEXT,
                        error TEXT,
                        created_at_ms INTEGER NOT NULL
                    ) STRICT;
                    CREATE INDEX acme_orders_by_account ON acme_orders (account_id, created_at_ms);
                    CREATE INDEX acme_orders_by_replaces ON acme_orders (replaces) WHERE replaces IS NOT NULL;
                    CREATE INDEX acme_orders_by_expiry ON acme_orders (expires_ms);

                    -- ARI: certificates an administrator asked to be replaced now (signet acme ari advance).
                    CREATE TABLE acme_renewal_advances (
                        serial TEXT PRIMARY KEY,
                        advanced_at_ms INTEGER NOT NULL
                    ) STRICT, WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("v9: administrator tokens") { db in
            // Revoking any tenant's certificate is a role of its own; every other caller revokes what it was issued.
            try db.execute(
                sql:
                    "ALTER TABLE tokens ADD COLUMN administrator INTEGER NOT NULL DEFAULT 0 CHECK (administrator IN (0, 1))"
            )
        }
        migrator.registerMigration("v10: CRLs") { db in
            // The latest CRL of each issuing key: its number (never reused: a new one is always above it), its
            // validity, and its DER, served as is until the next one replaces it.
            try db.execute(
                sql: """
                    CREATE TABLE crls (
                        issuer_key_id TEXT PRIMARY KEY,
                        number INTEGER NOT NULL,
                        this_update_ms INTEGER NOT NULL,
                        next_update_ms INTEGER NOT NULL,
                        entries INTEGER NOT NULL,
                        der BLOB NOT NULL
                    ) STRICT, WITHOUT ROWID;
                    CREATE INDEX certificates_revoked_by_issuer ON certificates (issuer_key_id, not_after) WHERE status = 'revoked';
                    """)
        }
        migrator.registerMigration("v11: URI names") { db in
            // Workload identities (SPIFFE IDs) in subjectAltName, as a JSON list like dns_names; also in certificate_names,
            // so a lookup by URI finds them.
            try db.execute(sql: "ALTER TABLE certificates ADD COLUMN uris TEXT NOT NULL DEFAULT '[]'")
        }
        migrator.registerMigration("v12: renewal claims") { db in
            // Until when a replica holds a due renewal (claimDueManagedCertificates): one process per SQLite file, but
            // the same contract as the PostgreSQL ledger, where several replicas claim from one table.
            try db.execute(sql: "ALTER TABLE managed_certificates ADD COLUMN claimed_until_ms INTEGER")
        }
        migrator.registerMigration("v13: leases") { db in
            // Named leases between replicas (LeaseStore): who holds each, and until when.
            try db.execute(
                sql: """
                    CREATE TABLE leases (
                        name TEXT PRIMARY KEY,
                        holder TEXT NOT NULL,
                        expires_ms INTEGER NOT NULL
                    ) STRICT, WITHOUT ROWID
                    """)
        }
        return migrator
    }
}

/// The target of a managed certificate as SQL expressions over its spec, spelled once: SQLite uses an index on
/// expressions only for queries that repeat them exactly.
enum ManagedTargetColumns {
    static let cluster = "json_extract(spec, '$.target.cluster')"
    static let namespace = "json_extract(spec, '$.target.namespace')"
    static let secretName = "json_extract(spec, '$.target.secretName')"
}
