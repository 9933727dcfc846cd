import GRDB

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension CertificateLedger: LedgerTransfer {
    public func exportRows(_ table: LedgerTable, after: LedgerValue?, limit: Int) async throws -> [[LedgerValue]] {
        let columns = table.columns.map(\.name).joined(separator: ", ")
        let sql =
            "SELECT \(columns) FROM \(table.name)" + (after == nil ? "" : " WHERE \(table.key) > ?")
            + " ORDER BY \(table.key) LIMIT \(limit)"
        let arguments: StatementArguments = after.map { [Self.databaseValue($0, kind: table.columns[0].kind)] } ?? []
        return try await pool.read { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                try table.columns.enumerated().map { index, column in
                    try Self.ledgerValue(row[index] as DatabaseValue, kind: column.kind, column: column.name)
                }
            }
        }
    }

    public func importRows(_ table: LedgerTable, _ rows: [[LedgerValue]]) async throws {
        let columns = table.columns.map(\.name)
        let sql =
            "INSERT INTO \(table.name) (\(columns.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))"
        try await pool.write { db in
            let statement = try db.cachedStatement(sql: sql)
            for row in rows {
                try statement.execute(
                    arguments: StatementArguments(
                        zip(row, table.columns).map { Self.databaseValue($0, kind: $1.kind) }))
                if table.name == "certificates" {
                    // The names index, as recording a certificate writes it.
                    let names = (row[4...6]).flatMap { value -> [String] in
                        if case .list(let items) = value { return items }
                        return []
                    }
                    for name in Set(names) {
                        try db.execute(
                            sql: "INSERT OR IGNORE INTO certificate_names (certificate_id, name) VALUES (?, ?)",
                            arguments: [Self.databaseValue(row[0], kind: .integer), name])
                    }
                }
            }
        }
    }

    /// SQLite's INTEGER PRIMARY KEY continues after the largest key by itself.
    public func finishImport() async throws {}

    public func rowCount(_ table: LedgerTable) async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table.name)") ?? 0 }
    }

    static func databaseValue(_ value: LedgerValue, kind: LedgerTable.Kind) -> DatabaseValue {
        switch value {
        case .null: .null
        case .integer(let number): number.databaseValue
        case .text(let text), .json(let text): text.databaseValue
        case .bytes(let bytes): Data(bytes).databaseValue
        case .list(let items): JSONList.encode(items).databaseValue
        case .bool(let flag): (flag ? 1 : 0).databaseValue
        }
    }

    static func ledgerValue(_ value: DatabaseValue, kind: LedgerTable.Kind, column: String) throws -> LedgerValue {
        if value.isNull { return .null }
        switch kind {
        case .integer:
            guard let number = Int64.fromDatabaseValue(value) else { throw LedgerError.corrupt("column \(column)") }
            return .integer(number)
        case .text, .json:
            guard let text = String.fromDatabaseValue(value) else { throw LedgerError.corrupt("column \(column)") }
            return kind == .json ? .json(text) : .text(text)
        case .bytes:
            guard let data = Data.fromDatabaseValue(value) else { throw LedgerError.corrupt("column \(column)") }
            return .bytes(Array(data))
        case .list:
            guard let text = String.fromDatabaseValue(value) else { throw LedgerError.corrupt("column \(column)") }
            return .list(try JSONList.decode(text))
        case .bool:
            guard let number = Int64.fromDatabaseValue(value) else { throw LedgerError.corrupt("column \(column)") }
            return .bool(number != 0)
        }
    }
}
