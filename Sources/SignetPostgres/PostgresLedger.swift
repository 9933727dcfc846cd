import Crypto
import Logging
import PostgresNIO
import SignetLedger
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The ledger on PostgreSQL: the same storage protocols as the SQLite `CertificateLedger`, so that any number of
/// Signet replicas can share one database. Every write is in a transaction that returns once committed
/// (`synchronous_commit` is on for the ledger's sessions; concurrent issuances share one, `committer`); constraints, not the callers, keep serials and token names
/// unique whichever replica writes.
public final class PostgresLedger: Sendable {
    let client: PostgresClient
    let logger: Logger
    /// Seals the private keys the ledger holds (a renewal's pending key); nil for callers that never touch them.
    let key: LedgerKey?
    /// The ACME nonce key, once read (it never changes).
    let nonceKeyCache = Mutex<SymmetricKey?>(nil)
    /// The pool's connection loop (PostgresNIO leases connections only while `run()` runs).
    private let running: Task<Void, Never>

    /// How long one operation may take, the wait for a connection included, before the database counts as
    /// unreachable: requests then fail with a 503 instead of queueing behind a server that is down.
    let deadline: Duration
    /// Issuances (and audit events) arriving while one transaction is being written share the next: one commit, one
    /// WAL flush, one turn of the issuance lock for all of them, instead of one each.
    let committer: GroupCommitter<@Sendable (PostgresConnection) async throws -> Void>

    /// Connects, and brings the schema up to date (one replica migrates; the others wait on its lock).
    /// `deadline`: see `reachable`; 10 s serves clients (who retry a 503 sooner than they would wait).
    public init(
        _ connection: PostgresConnectionSettings, key: LedgerKey? = nil, deadline: Duration = .seconds(10),
        logger: Logger
    ) async throws {
        self.deadline = deadline
        var configuration = try connection.clientConfiguration()
        configuration.options.maximumConnections = connection.maximumConnections
        // Every session commits synchronously (the server's or the role's default may say otherwise): a commit
        // returns only once PostgreSQL has flushed it to its WAL, as `synchronous = FULL` does for SQLite.
        configuration.options.additionalStartupParameters = [("synchronous_commit", "on")]
        // Without a lease bound, requests queue behind a dead server until the pool gives up on its own time.
        configuration.options.connectionIdleTimeout = .seconds(60)
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        self.key = key
        self.running = Task { await client.run() }
        self.committer = GroupCommitter { [client, logger] batch in
            try await Self.transaction(client: client, logger: logger, deadline: deadline) { connection in
                // Issuances take turns on this lock (see `record`); a batch takes it once.
                try await connection.query(
                    "SELECT pg_advisory_xact_lock(\(PostgresSchema.lockKey + 1))", logger: logger)
                for work in batch { try await work(connection) }
            }
        }
        do {
            try await PostgresSchema.migrate(connection, logger: logger)
        } catch {
            running.cancel()
            throw error
        }
    }

    /// Stops the pool; in-flight queries finish or fail. Waits at most ten seconds for the pool to wind down, so a
    /// shutdown is never held by a connection the server does not answer on.
    public func close() async {
        running.cancel()
        let running = self.running
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = await running.result }
            group.addTask { try? await Task.sleep(for: .seconds(10)) }
            await group.next()
            group.cancelAll()
        }
    }

    deinit { running.cancel() }

    public var groupCommitTransactions: Int {
        get async { await committer.transactions }
    }

    /// One transaction; it returns only once PostgreSQL has flushed the commit to its WAL (`synchronous_commit` is
    /// on for every session of the pool).
    func transaction<Result: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await Self.transaction(client: client, logger: logger, deadline: deadline, body)
    }

    static func transaction<Result: Sendable>(
        client: PostgresClient, logger: Logger, deadline: Duration,
        _ body: @escaping @Sendable (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await reachable(deadline: deadline) {
            try await client.withConnection { connection in
                try await connection.query("BEGIN", logger: logger)
                do {
                    let result = try await body(connection)
                    try await connection.query("COMMIT", logger: logger)
                    return result
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        }
    }

    /// The rows of a read, each made into a value. Every row is received before any is made into a value: a row that
    /// does not decode must not leave the rest unread, which would keep the connection leased.
    func rows<Value>(_ query: PostgresQuery, _ make: (PostgresRandomAccessRow) throws -> Value) async throws -> [Value]
    {
        let received = try await reachable {
            var received: [PostgresRow] = []
            for try await row in try await self.client.query(query, logger: self.logger) { received.append(row) }
            return received
        }
        return try received.map { try make($0.makeRandomAccess()) }
    }

    /// Runs `body` against the database; a database that cannot be reached (no connection, a connection lost, the
    /// server shutting down or starting, the deadline passed) is `LedgerError.unavailable`.
    func reachable<Result: Sendable>(_ body: @escaping @Sendable () async throws -> Result) async throws -> Result {
        try await Self.reachable(deadline: deadline, body)
    }

    /// The deadline holds whatever `body` does: when it passes, the caller gets `unavailable` at once and `body` is
    /// cancelled and left to end on its own. Waiting for it instead would let a connection that ignores
    /// cancellation (seen with PostgreSQL restarting under load: a lease that never came back) hold a request,
    /// and with it a graceful shutdown, for as long as the server is away. A transaction left behind either commits
    /// or rolls back; a certificate it commits was never handed out, which the ledger allows (the reverse it never
    /// does).
    static func reachable<Result: Sendable>(
        deadline: Duration, _ body: @escaping @Sendable () async throws -> Result
    ) async throws -> Result {
        let outcome = FirstOutcome<Result>()
        let work = Task {
            do { outcome.settle(.success(try await body())) } catch { outcome.settle(.failure(error)) }
        }
        let timer = Task {
            try await Task.sleep(for: deadline)
            outcome.settle(.failure(LedgerError.unavailable("PostgreSQL did not answer within \(deadline)")))
            work.cancel()
        }
        defer { timer.cancel() }
        do {
            return try await withTaskCancellationHandler {
                try await outcome.value
            } onCancel: {
                work.cancel()
                outcome.settle(.failure(CancellationError()))
            }
        } catch let error as PSQLError where Self.isUnreachable(error) {
            throw LedgerError.unavailable("PostgreSQL cannot be reached: \(Self.describe(error))")
        }
    }

    /// Errors that say the database is not there, as opposed to a statement it refused: no answer from the server at
    /// all, or SQLSTATE class 08 (connection exception) or 57P (operator intervention: shutdown, starting up).
    static func isUnreachable(_ error: PSQLError) -> Bool {
        guard let state = error.serverInfo?[.sqlState] else { return true }
        return state.hasPrefix("08") || state.hasPrefix("57P")
    }

    static func describe(_ error: PSQLError) -> String {
        if let message = error.serverInfo?[.message] { return message }
        return "\(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
    }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }
    static func seconds(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970) }
    static func date(milliseconds: Int64) -> Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }
    static func date(seconds: Int64) -> Date { Date(timeIntervalSince1970: TimeInterval(seconds)) }

    /// Whether `error` is PostgreSQL's unique_violation (SQLSTATE 23505).
    static func isUniqueViolation(_ error: any Error) -> Bool {
        (error as? PSQLError)?.serverInfo?[.sqlState] == "23505"
    }
}

extension PostgresRandomAccessRow {
    /// The column's value, decoded; a row that does not decode is a corrupt ledger, named by its column.
    func value<Value: PostgresDecodable>(_ column: String, as type: Value.Type = Value.self) throws -> Value {
        do {
            return try self[column].decode(Value.self)
        } catch {
            throw LedgerError.corrupt("column \(column): \(error)")
        }
    }
}

extension PostgresConnection {
    /// Every row of a query on this connection, all received before the caller looks at any (see `rows`).
    func allRows(_ query: PostgresQuery) async throws -> [PostgresRandomAccessRow] {
        var received: [PostgresRandomAccessRow] = []
        for try await row in try await self.query(query, logger: logger) { received.append(row.makeRandomAccess()) }
        return received
    }
}

extension PostgresLedger: Ledger {}

/// The first of several outcomes racing to settle one wait (`reachable`'s work, its deadline, its caller giving up);
/// later ones are dropped.
final class FirstOutcome<Value: Sendable>: Sendable {
    private enum State {
        case pending([CheckedContinuation<Value, any Error>])
        case settled(Result<Value, any Error>)
    }

    private let state = Mutex(State.pending([]))

    func settle(_ result: Result<Value, any Error>) {
        let waiting: [CheckedContinuation<Value, any Error>] = state.withLock { state in
            guard case .pending(let waiting) = state else { return [] }
            state = .settled(result)
            return waiting
        }
        for continuation in waiting { continuation.resume(with: result) }
    }

    var value: Value {
        get async throws {
            try await withCheckedThrowingContinuation { continuation in
                let settled: Result<Value, any Error>? = state.withLock { state in
                    switch state {
                    case .pending(let waiting):
                        state = .pending(waiting + [continuation])
                        return nil
                    case .settled(let result): return result
                    }
                }
                if let settled { continuation.resume(with: settled) }
            }
        }
    }
}
