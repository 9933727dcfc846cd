import ArgumentParser
import Logging
import SignetLedger
import SignetServer

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "The ledger's own operations (run on the server).",
        subcommands: [Backup.self, Migrate.self]
    )

    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the live SQLite ledger consistently while Signet serves (SQLite's online backup).",
            discussion: """
                The copy is the ledger as of one moment: every certificate answered before the backup began is in \
                it. It holds the same sealed pending keys; keep the ledger key (ledger.key) in a separate backup, \
                never beside the copy. An existing file is never overwritten.
                """
        )

        @OptionGroup var location: LedgerLocation

        @Option(help: "The new file to write (must not exist).")
        var to: String

        func run() async throws {
            let source = try location.database ?? location.configuration().resolvedDatabasePath
            let summary = try CertificateLedger.backup(ledgerAt: source, to: to)
            print(
                "backed up \(summary.certificates) certificates and \(summary.auditEvents) audit events to \(summary.path)"
            )
        }
    }

    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Copy a whole ledger into a new, empty one: SQLite to PostgreSQL, back, or to another of its kind.",
            discussion: """
                Every certificate, audit event, token, managed certificate (with its renewal state and sealed \
                pending key), CRL and ACME record is copied; then each table is read back from both and compared by \
                its row count and a SHA-256 of its rows. A target that holds any row is refused. Stop Signet first: \
                what it writes during the copy is not in the target. Serve the target with the same ledger key \
                (sealed keys are copied sealed). --from and --to are a SQLite file or a postgres:// URL; a \
                PostgreSQL password comes from --from-password-file / --to-password-file.
                """
        )

        @Option(help: "The ledger to copy: a SQLite file or a postgres:// URL.")
        var from: String
        @Option(help: "The new ledger: a SQLite file or a postgres:// URL (must be empty).")
        var to: String
        @Option(help: "A file holding the source PostgreSQL's password.")
        var fromPasswordFile: String?
        @Option(help: "A file holding the target PostgreSQL's password.")
        var toPasswordFile: String?

        func run() async throws {
            let logger = Logger(label: "signet.ledger")
            func open(_ location: String, passwordFile: String?) async throws -> any Ledger {
                var configuration = ServerConfiguration()
                configuration.databasePath = location
                configuration.databasePasswordFile = passwordFile
                return try await configuration.ledgerDatabase().open(key: nil, logger: logger)
            }
            let source = try await open(from, passwordFile: fromPasswordFile)
            let target = try await open(to, passwordFile: toPasswordFile)
            do {
                let reports = try await LedgerMigration.copy(from: source, to: target)
                for report in reports {
                    print("\(report.table): \(report.rows) rows, sha256 \(report.digest)")
                }
                print("copied and verified \(reports.count) tables")
            } catch let failure as LedgerMigration.Failure {
                try? await source.close()
                try? await target.close()
                throw CommandFailure(failure.description)
            }
            try await source.close()
            try await target.close()
        }
    }
}
