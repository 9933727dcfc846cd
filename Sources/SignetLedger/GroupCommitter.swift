import GRDB

/// Commits concurrent writes together: one transaction, one fsync, for everything that arrived while the
/// previous transaction was being written ("group commit"). Every caller returns only after the transaction
/// holding its writes is durable, so nothing is handed out before it is on disk.
///
/// There is no background task: the first caller to find the committer idle becomes the leader and writes the
/// batch; when it is done, leadership passes to the oldest waiter, which writes whatever gathered meanwhile.
actor GroupCommitter {
    typealias Work = @Sendable (Database) throws -> Void

    private enum Wakeup {
        case committed
        case lead
    }

    private struct Waiter {
        let work: Work
        let continuation: CheckedContinuation<Wakeup, any Error>
    }

    private let writer: any DatabaseWriter
    private var waiters: [Waiter] = []
    private var leading = false
    private let maximumBatch: Int
    /// Transactions written so far (a batch is one; a failed batch's retries are one each): what the sharing saves.
    private(set) var transactions = 0

    init(writer: any DatabaseWriter, maximumBatch: Int = 256) {
        self.writer = writer
        self.maximumBatch = maximumBatch
    }

    func commit(_ work: @escaping Work) async throws {
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
    private func lead(with own: @escaping Work) async throws {
        let taken = Array(waiters.prefix(maximumBatch - 1))
        waiters.removeFirst(taken.count)
        let results = await write([own] + taken.map(\.work))
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
    /// (a constraint violation, say) fails only its own caller.
    private func write(_ batch: [Work]) async -> [Result<Void, any Error>] {
        transactions += 1
        do {
            try await writer.write { db in
                for work in batch { try work(db) }
            }
            return batch.map { _ in .success(()) }
        } catch {
            if batch.count == 1 { return [.failure(error)] }
        }
        var results: [Result<Void, any Error>] = []
        for work in batch {
            transactions += 1
            do {
                try await writer.write { db in try work(db) }
                results.append(.success(()))
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }
}
