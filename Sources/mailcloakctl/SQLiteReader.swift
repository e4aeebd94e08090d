// Read-only access to a SQLite file through libsqlite3: table columns from
// PRAGMA table_info and rows as loosely typed values, since the first
// generation's columns are declared INTEGER/TEXT but SQLite does not enforce it.
import CSQLite

/// One SQLite value as stored.
enum SQLiteValue: Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob

    /// The value as text for columns that should contain text, or nil for NULL and blobs.
    var text: String? {
        switch self {
        case .text(let value): value
        case .integer(let value): String(value)
        case .real(let value): String(value)
        case .null, .blob: nil
        }
    }
}

/// An open, read-only SQLite database.
final class SQLiteReader {
    /// Maximum rows read from one table, so that a wrong file cannot exhaust memory.
    static let maxRows = 1_000_000
    /// Maximum length of a text value, in bytes.
    static let maxValueLength = 4096

    private var handle: OpaquePointer?
    let path: String

    /// Opens `path` read-only. - Throws: `CLIError.runtime` when it cannot be opened.
    init(path: String) throws(CLIError) {
        self.path = path
        var handle: OpaquePointer?
        let status = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READONLY, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(handle)
            throw .runtime("cannot open SQLite database \(path): \(message)")
        }
        self.handle = handle
        sqlite3_busy_timeout(handle, 5000)
    }

    deinit {
        sqlite3_close(handle)
    }

    /// Returns the lower-cased column names of `table`, or an empty array when it does not exist.
    func columns(of table: String) throws(CLIError) -> [String] {
        let rows = try query("PRAGMA table_info(\(quoteIdentifier(table)))")
        return rows.compactMap { $0.count > 1 ? $0[1].text?.lowercased() : nil }
    }

    /// Runs `sql` and returns every row. - Throws: a runtime error naming the file.
    func query(_ sql: String) throws(CLIError) -> [[SQLiteValue]] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw .runtime("cannot read \(path): \(String(cString: sqlite3_errmsg(handle)))")
        }
        defer { sqlite3_finalize(statement) }

        var rows: [[SQLiteValue]] = []
        while true {
            let status = sqlite3_step(statement)
            if status == SQLITE_DONE { break }
            guard status == SQLITE_ROW else {
                throw .runtime("cannot read \(path): \(String(cString: sqlite3_errmsg(handle)))")
            }
            guard rows.count < Self.maxRows else {
                throw .runtime("cannot read \(path): more than \(Self.maxRows) rows in one table")
            }
            rows.append(try (0..<sqlite3_column_count(statement)).map { column throws(CLIError) in
                try value(statement, column)
            })
        }
        return rows
    }

    private func value(_ statement: OpaquePointer, _ column: Int32) throws(CLIError) -> SQLiteValue {
        switch sqlite3_column_type(statement, column) {
        case SQLITE_NULL: return .null
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, column))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            let length = Int(sqlite3_column_bytes(statement, column))
            guard length <= Self.maxValueLength else {
                throw .runtime("cannot read \(path): a value is longer than \(Self.maxValueLength) bytes")
            }
            guard let text = sqlite3_column_text(statement, column) else { return .null }
            let bytes = UnsafeBufferPointer(start: text, count: length)
            return .text(String(decoding: bytes, as: UTF8.self))
        default:
            return .blob
        }
    }
}

/// Quotes a SQLite identifier with double quotes.
func quoteIdentifier(_ name: String) -> String {
    "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
