// A database of its own on the test cluster, created and dropped with psql,
// and mailcloakctl pointed at it. Names are random, so several runs can share
// one cluster.

import Foundation

/// One database on the cluster of MAILCLOAK_TEST_DATABASE_URL.
struct TestDatabase: Sendable {
    let name: String
    /// URL of this database, for mailcloak and mailcloakctl.
    let url: String
    /// Superuser URL of the cluster's `postgres` database, which creates and drops it.
    let adminURL: String

    /// Creates a database with a random name `mailcloak_e2e_<12 hex digits>`.
    /// - Throws: `StackSetupError.invalidDatabaseURL`, or the psql failure.
    static func create(adminURL: String) throws -> TestDatabase {
        let suffix = UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
        let name = "mailcloak_e2e_\(suffix)"
        guard var components = URLComponents(string: adminURL),
            components.scheme == "postgresql" || components.scheme == "postgres"
        else {
            throw StackSetupError.invalidDatabaseURL(adminURL)
        }
        components.path = "/" + name
        guard let url = components.string else { throw StackSetupError.invalidDatabaseURL(adminURL) }

        try psql(adminURL, "CREATE DATABASE \(name)")
        return TestDatabase(name: name, url: url, adminURL: adminURL)
    }

    /// Runs one SQL statement in this database and returns its output in
    /// unaligned form (one row a line, `|` between columns) without the last newline.
    func query(_ sql: String) throws -> String {
        let output = try Self.psql(url, sql)
        return output.hasSuffix("\n") ? String(output.dropLast()) : output
    }

    /// Drops the database, closing the connections still open to it.
    func drop() throws {
        try Self.psql(adminURL, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    @discardableResult
    private static func psql(_ url: String, _ sql: String) throws -> String {
        let arguments = [
            url, "--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "-v", "ON_ERROR_STOP=1", "-c", sql,
        ]
        return try TestEnvironment.runChecked("/usr/bin/psql", arguments).standardOutput
    }
}

/// mailcloakctl from the build folder, pointed at one database.
struct MailcloakCtl: Sendable {
    let path: String
    let databaseURL: String

    func run(_ arguments: [String]) throws -> CommandResult {
        try TestEnvironment.run(path, ["--database-url", databaseURL] + arguments)
    }

    @discardableResult
    func runChecked(_ arguments: [String]) throws -> CommandResult {
        try TestEnvironment.runChecked(path, ["--database-url", databaseURL] + arguments)
    }
}
