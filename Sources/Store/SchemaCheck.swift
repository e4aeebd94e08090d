// Comparing the database's schema version with the one this build needs,
// and the one-shot reachability check behind `mailcloak check`.
import Config

/// The result of comparing a database's schema version with this build's.
public enum SchemaCheck: Sendable, Equatable, CustomStringConvertible {
    /// The database is at the version this build needs.
    case current(version: Int)
    /// The database needs `mailcloakctl migrate` before this build can use it.
    case behind(found: Int, expected: Int)
    /// The database was migrated by a newer build; this build reads it as it is.
    case ahead(found: Int, expected: Int)

    /// The schema version this build reads and writes.
    public static var expectedVersion: Int { Migrations.latestVersion }

    /// Classifies a version read from schema_migrations.
    public init(found: Int) {
        let expected = SchemaCheck.expectedVersion
        if found == expected {
            self = .current(version: found)
        } else if found < expected {
            self = .behind(found: found, expected: expected)
        } else {
            self = .ahead(found: found, expected: expected)
        }
    }

    /// Whether the daemon can load snapshots from this schema.
    public var isUsable: Bool {
        if case .behind = self { return false }
        return true
    }

    public var description: String {
        switch self {
        case .current(let version):
            "schema version \(version) of \(version)"
        case .behind(let found, let expected):
            "schema version \(found) of \(expected); run: mailcloakctl migrate"
        case .ahead(let found, let expected):
            "schema version \(found) of \(expected) (migrated by a newer build)"
        }
    }
}

/// Connects once, reads the server and schema versions, and disconnects.
/// - Returns: `PostgreSQL 15.18 reachable, schema version 1 of 1`, or the
///   error: unreachable server, failed query, or `.schemaBehind`.
public func checkDatabase(config: DatabaseConfig) -> Result<String, StoreError> {
    do throws(StoreError) {
        let connection = try PostgresConnection(
            conninfo: config.url, applicationName: "mailcloak-check",
            connectTimeout: config.connectTimeout, statementTimeout: config.statementTimeout)
        defer { connection.close() }
        let check = SchemaCheck(found: try Migrations.currentVersion(connection))
        if case .behind(let found, let expected) = check {
            return .failure(.schemaBehind(found: found, expected: expected))
        }
        return .success("PostgreSQL \(connection.serverVersion) reachable, \(check)")
    } catch {
        return .failure(error)
    }
}
