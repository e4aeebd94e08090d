// The rows of one query result, copied out of libpq as text so that the
// PGresult can be freed at once. Values are in PostgreSQL's text format:
// booleans are "t"/"f", NULL is nil.
import CLibPQ

/// A query result as text values, row by row.
package struct PostgresRows: Sendable {
    package let columns: [String]
    package let rows: [[String?]]

    package init(columns: [String], rows: [[String?]]) {
        self.columns = columns
        self.rows = rows
    }

    init(result: OpaquePointer) {
        let columnCount = PQnfields(result)
        let rowCount = PQntuples(result)
        columns = (0..<columnCount).map { String(cString: PQfname(result, $0)) }
        var rows: [[String?]] = []
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            rows.append((0..<columnCount).map { column in
                PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
            })
        }
        self.rows = rows
    }

    package var count: Int { rows.count }

    /// Returns the text of `column` in `row`; nil for NULL.
    /// - Throws: `StoreError.unexpectedResult` when the column does not exist.
    package func text(_ row: Int, _ column: String) throws(StoreError) -> String? {
        guard let index = columns.firstIndex(of: column) else {
            throw .unexpectedResult("missing column \(column)")
        }
        return rows[row][index]
    }

    /// Returns the non-NULL text of `column` in `row`.
    package func string(_ row: Int, _ column: String) throws(StoreError) -> String {
        guard let value = try text(row, column) else { throw .unexpectedResult("NULL in column \(column)") }
        return value
    }

    /// Returns `column` in `row` as a boolean (`t` or `f`).
    package func bool(_ row: Int, _ column: String) throws(StoreError) -> Bool {
        switch try string(row, column) {
        case "t": return true
        case "f": return false
        case let other: throw .unexpectedResult("column \(column) is \(other), expected t or f")
        }
    }

    /// Returns `column` in `row` as an integer.
    package func int(_ row: Int, _ column: String) throws(StoreError) -> Int {
        let value = try string(row, column)
        guard let number = Int(value) else { throw .unexpectedResult("column \(column) is \(value), expected an integer") }
        return number
    }
}
