import PostgresNIO
import SignetLedger

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension PostgresLedger: LedgerTransfer {
    /// Text keys are compared byte by byte (`COLLATE "C"`), as SQLite compares them, so both backends list a table
    /// in the same order and their digests agree.
    public func exportRows(_ table: LedgerTable, after: LedgerValue?, limit: Int) async throws -> [[LedgerValue]] {
        let columns = table.columns.map { Self.selected($0.name, $0.kind) }.joined(separator: ", ")
        let order = table.columns[0].kind == .text ? "\(table.key) COLLATE \"C\"" : table.key
        var query = PostgresQuery(
            unsafeSQL: "SELECT \(columns) FROM \(table.name)" + (after == nil ? "" : " WHERE \(order) > $1")
                + " ORDER BY \(order) LIMIT \(limit)")
        if let after { try Self.bind(after, kind: table.columns[0].kind, into: &query.binds) }
        return try await rows(query) { row in
            try table.columns.map { column in try Self.value(row, column.name, column.kind) }
        }
    }

    public func importRows(_ table: LedgerTable, _ rows: [[LedgerValue]]) async throws {
        let names = table.columns.map(\.name).joined(separator: ", ")
        let placeholders = table.columns.enumerated().map { index, column in
            "$\(index + 1)" + (column.kind == .json ? "::jsonb" : "")
        }.joined(separator: ", ")
        let sql =
            "INSERT INTO \(table.name) (\(names))" + (table.generatedKey ? " OVERRIDING SYSTEM VALUE" : "")
            + " VALUES (\(placeholders))"
        let statements = try rows.map { row in
            var query = PostgresQuery(unsafeSQL: sql)
            for (value, column) in zip(row, table.columns) {
                try Self.bind(value, kind: column.kind, into: &query.binds)
            }
            return query
        }
        try await transaction { [self] connection in
            for (row, statement) in zip(rows, statements) {
                try await connection.query(statement, logger: connection.logger)
                if table.name == "certificates", case .integer(let id) = row[0] {
                    // The names index, as recording a certificate writes it.
                    let names = row[4...6].flatMap { value -> [String] in
                        if case .list(let items) = value { return items }
                        return []
                    }
                    try await connection.query(
                        """
                        INSERT INTO certificate_names (certificate_id, name)
                        SELECT \(id), name FROM unnest(\(names)::text[]) AS name ON CONFLICT DO NOTHING
                        """, logger: connection.logger)
                }
            }
        }
    }

    /// Identity columns continue after the largest imported key.
    public func finishImport() async throws {
        try await transaction { [self] connection in
            for table in LedgerTables.all where table.generatedKey {
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: """
                            SELECT setval(pg_get_serial_sequence('\(table.name)', '\(table.key)'),
                                GREATEST((SELECT max(\(table.key)) FROM \(table.name)), 1))
                            """), logger: connection.logger)
            }
        }
    }

    public func rowCount(_ table: LedgerTable) async throws -> Int {
        try await rows(PostgresQuery(unsafeSQL: "SELECT count(*) AS n FROM \(table.name)")) {
            Int(try $0.value("n", as: Int64.self))
        }.first ?? 0
    }

    /// JSON is read as text, so the row decodes the same way whatever PostgreSQL's rendering.
    private static func selected(_ name: String, _ kind: LedgerTable.Kind) -> String {
        kind == .json ? "\(name)::text AS \(name)" : name
    }

    private static func bind(_ value: LedgerValue, kind: LedgerTable.Kind, into binds: inout PostgresBindings) throws {
        switch value {
        case .null:
            switch kind {
            case .integer: binds.append(Int64?.none)
            case .bytes: try binds.append(Data?.none)
            case .list: binds.append([String]?.none)
            case .bool: binds.append(Bool?.none)
            case .text, .json: binds.append(String?.none)
            }
        case .integer(let number): binds.append(number)
        case .text(let text), .json(let text): binds.append(text)
        case .bytes(let bytes): try binds.append(Data(bytes))
        case .list(let items): binds.append(items)
        case .bool(let flag): binds.append(flag)
        }
    }

    private static func value(_ row: PostgresRandomAccessRow, _ column: String, _ kind: LedgerTable.Kind) throws
        -> LedgerValue
    {
        switch kind {
        case .integer: try row.value(column, as: Int64?.self).map(LedgerValue.integer) ?? .null
        case .text: try row.value(column, as: String?.self).map(LedgerValue.text) ?? .null
        case .json: try row.value(column, as: String?.self).map(LedgerValue.json) ?? .null
        case .bytes: try row.value(column, as: Data?.self).map { .bytes(Array($0)) } ?? .null
        case .list: try row.value(column, as: [String]?.self).map(LedgerValue.list) ?? .null
        case .bool: try row.value(column, as: Bool?.self).map(LedgerValue.bool) ?? .null
        }
    }
}
