/// Commits concurrent writes together: one transaction, one flush to disk, for everything that arrived while the
/// previous transaction was being written ("group commit"). Every caller returns only after the transaction holding
/// its writes is committed, so nothing is handed out before it is durable.
///
/// The committer knows nothing of the database: `transact` is the backend's way of running a batch of `Work` in one
/// transaction (GRDB's `write` for SQLite; BEGIN … COMMIT on a pooled connection for PostgreSQL).
///
/// There is no background task: the first caller to find the committer idle becomes the leader and writes the batch;
/// when it is done, leadership passes to the oldest waiter, which writes whatever gathered meanwhile.
public actor GroupCommitter<Work: Sendable> {
    public typealias Transact = @Sendable ([Work]) async throws -> Void

    private enum Wakeup {
        case committed
        case lead
    }

    private struct Waiter {
        let work: Work
        let continuation: CheckedContinuation<Wakeup, any Error>
    }

    private let transact: Transact
    private var waiters: [Waiter] = []
    private var leading = false
    private let maximumBatch: Int
    /// Transactions written so far (a batch is one; a failed batch's retries are one each): what the sharing saves.
    public private(set) var transactions = 0

    public init(maximumBatch: Int = 256, transact: @escaping Transact) {
        self.transact = transact
        self.maximumBatch = maximumBatch
    }

    public func commit(_ work: Work) async throws {
        if leading {
            let wakeup = try await withCheckedThrowingContinuation { continuation in
                waiters.append(Waiter(work: work, continuation: continuation))
            }
            if case .committed = wakeup { return }
        } else {
            leading = true
        }
        try await lead(with: work)
    }

    /// Writes the leader's own work and everything waiting (up to `maximumBatch`), then hands leadership on.
    private func lead(with own: Work) async throws {
        let taken = Array(waiters.prefix(maximumBatch - 1))
        waiters.removeFirst(taken.count)
        let batch = [own] + taken.map(\.work)
        // The batch is written in a task of its own: a leader whose caller gives up (a cancelled request) must not
        // cancel the writes of the callers waiting on it.
        let results = await Task { await self.write(batch) }.value
        for (waiter, result) in zip(taken, results.dropFirst()) {
            switch result {
            case .success: waiter.continuation.resume(returning: .committed)
            case .failure(let error): waiter.continuation.resume(throwing: error)
            }
        }
        if waiters.isEmpty {
            leading = false
        } else {
            waiters.removeFirst().continuation.resume(returning: .lead)
        }
        try results[0].get()
    }

    /// One transaction for the whole batch. If it fails, each piece is retried on its own so that one bad write
    /// (a constraint violation, say) fails only its own caller; the failed transaction wrote nothing. A database that
    /// cannot be reached fails the whole batch at once: retrying piece by piece would only wait longer for it.
    private func write(_ batch: [Work]) async -> [Result<Void, any Error>] {
        transactions += 1
        do {
            try await transact(batch)
            return batch.map { _ in .success(()) }
        } catch {
            if batch.count == 1 || error is CancellationError { return batch.map { _ in .failure(error) } }
            if case LedgerError.unavailable = error { return batch.map { _ in .failure(error) } }
        }
        var results: [Result<Void, any Error>] = []
        for work in batch {
            transactions += 1
            do {
                try await transact([work])
                results.append(.success(()))
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }
}
