// Errors of the PostgreSQL store and the admin operations built on it.
// Descriptions name the server (host, port, database, user) but never the
// password of the connection string: messages that libpq returns pass
// through a redactor that masks the password before they are stored here.

/// A failure to reach PostgreSQL, run a statement or use the schema.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// libpq could not parse the connection string or URI.
    case invalidConnectionString(reason: String)
    /// The connection could not be opened. `target` names host, port, database and user.
    case connectionFailed(target: String, reason: String)
    /// An open connection broke (server restart, terminated backend, network error).
    case connectionLost(target: String, reason: String)
    /// A connect, query or wait did not finish within its deadline.
    case timedOut(operation: String, seconds: Double)
    /// The server rejected a statement. `sqlState` is the five-character SQLSTATE code.
    case queryFailed(sqlState: String, message: String)
    /// A result did not have the expected shape (column count, value format).
    case unexpectedResult(String)
    /// The database schema is older than this build needs.
    case schemaBehind(found: Int, expected: Int)
    /// The operation was interrupted by `SnapshotStore.stop()`.
    case stopped

    public var description: String {
        switch self {
        case .invalidConnectionString(let reason):
            "invalid PostgreSQL connection string: \(reason)"
        case .connectionFailed(let target, let reason):
            "cannot connect to PostgreSQL at \(target): \(reason)"
        case .connectionLost(let target, let reason):
            "lost the connection to PostgreSQL at \(target): \(reason)"
        case .timedOut(let operation, let seconds):
            "PostgreSQL \(operation) timed out after \(formatSeconds(seconds)) s"
        case .queryFailed(let sqlState, let message):
            "PostgreSQL error \(sqlState): \(message)"
        case .unexpectedResult(let detail):
            "unexpected PostgreSQL result: \(detail)"
        case .schemaBehind(let found, let expected):
            "database schema is at version \(found) but this build needs version \(expected); "
                + "run: mailcloakctl migrate"
        case .stopped:
            "the store was stopped"
        }
    }

    /// The SQLSTATE of a failed statement, or nil for other errors.
    package var sqlState: String? {
        if case .queryFailed(let state, _) = self { return state }
        return nil
    }
}

/// Formats a duration without a trailing `.0` for whole seconds.
func formatSeconds(_ seconds: Double) -> String {
    if seconds == seconds.rounded() && abs(seconds) < 1e9 { return String(Int(seconds)) }
    return String(seconds)
}
