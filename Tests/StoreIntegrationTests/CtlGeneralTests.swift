// mailcloakctl as a subprocess: command-line errors, database selection,
// unreachable servers and migrate.
import Foundation
import Testing

@Suite struct CtlGeneralTests {
    static let mainUsage = "usage: mailcloakctl [--database-url URL | --config FILE] [--json] COMMAND [ARGS]\n"

    @Test func missingCommandIsUsageError() throws {
        let database = try TestDatabase()

        let result = try ctl(database, [])

        #expect(result == ProcessResult(status: 2, stdout: "", stderr: "mailcloakctl: missing command\n" + Self.mainUsage))
    }

    @Test func unknownCommandIsUsageError() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["frobnicate"])

        #expect(result == ProcessResult(
            status: 2, stdout: "", stderr: "mailcloakctl: unknown command \"frobnicate\"\n" + Self.mainUsage))
    }

    @Test func unknownOptionIsUsageError() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["domains", "list", "--verbose"])

        #expect(result == ProcessResult(
            status: 2, stdout: "", stderr: "mailcloakctl: unknown option --verbose\n" + Self.mainUsage))
    }

    @Test func helpPrintsUsageAndSucceeds() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["--help"])

        #expect(result.status == 0)
        #expect(result.stdout.hasPrefix(Self.mainUsage))
        #expect(result.stderr == "")
    }

    @Test func missingDatabaseIsUsageError() throws {
        let result = try runProcess(try mailcloakctlPath(), ["domains", "list"])

        #expect(result == ProcessResult(
            status: 2, stdout: "",
            stderr: "mailcloakctl: no database given: use --database-url URL, --config FILE or set "
                + "MAILCLOAK_DATABASE_URL\n" + Self.mainUsage))
    }

    @Test func databaseURLOptionWinsOverEnvironment() throws {
        let database = try TestDatabase()

        let result = try runProcess(
            try mailcloakctlPath(), ["--database-url", database.url, "domains", "list"],
            environment: ["MAILCLOAK_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"])

        #expect(result == ProcessResult(status: 0, stdout: "no domains\n", stderr: ""))
    }

    @Test func configFileSuppliesDatabaseURL() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = folder.path + "/mailcloak.yaml"
        try """
            listeners:
              - name: local
                address: "tcp:127.0.0.1:10027"
            database:
              url: "\(database.url.replacingOccurrences(of: "'", with: ""))"

            """.write(toFile: path, atomically: true, encoding: .utf8)
        _ = try ctl(database, ["domains", "add", "example.com"])

        let result = try runProcess(try mailcloakctlPath(), ["--config", path, "domains", "list"])

        #expect(result == ProcessResult(status: 0, stdout: """
            DOMAIN       STATUS   ALIASES
            example.com  enabled  0

            """, stderr: ""))
    }

    @Test func unreadableConfigFileFails() throws {
        let result = try runProcess(try mailcloakctlPath(), ["--config", "/nonexistent/mailcloak.yaml", "domains", "list"])

        #expect(result == ProcessResult(
            status: 1, stdout: "",
            stderr: "mailcloakctl: cannot use --config /nonexistent/mailcloak.yaml: /nonexistent/mailcloak.yaml: "
                + "cannot read the configuration file: No such file or directory\n"))
    }

    @Test func unreachableDatabaseNamesServerNotPassword() throws {
        let result = try runProcess(
            try mailcloakctlPath(),
            ["--database-url", "postgresql://admin:hunter22secret@127.0.0.1:1/mailcloak", "domains", "list"])

        #expect(result == ProcessResult(
            status: 1, stdout: "",
            stderr: "mailcloakctl: cannot connect to PostgreSQL at 127.0.0.1:1 (database mailcloak, user admin): "
                + "connection to server at \"127.0.0.1\", port 1 failed: Connection refused; "
                + "Is the server running on that host and accepting TCP/IP connections?\n"))
    }

    @Test func invalidDatabaseURLIsRuntimeError() throws {
        let result = try runProcess(try mailcloakctlPath(), ["--database-url", "postgresql://[::1", "domains", "list"])

        #expect(result.status == 1)
        #expect(result.stdout == "")
        #expect(result.stderr.hasPrefix("mailcloakctl: invalid PostgreSQL connection string: "))
    }

    @Test func migrateThenUpToDate() throws {
        let database = try TestDatabase(migrated: false)

        let first = try ctl(database, ["migrate"])
        let second = try ctl(database, ["migrate"])

        #expect(first == ProcessResult(
            status: 0, stdout: "applied migration 1: domains, aliases, apps and app senders\nschema version 1\n",
            stderr: ""))
        #expect(second == ProcessResult(status: 0, stdout: "schema version 1, up to date\n", stderr: ""))
    }

    @Test func migrateRejectsArguments() throws {
        let database = try TestDatabase(migrated: false)

        let result = try ctl(database, ["migrate", "now"])

        #expect(result == ProcessResult(
            status: 2, stdout: "", stderr: "mailcloakctl: unexpected argument now\nusage: mailcloakctl migrate\n"))
    }

    @Test func commandsRequireMigratedSchema() throws {
        let database = try TestDatabase(migrated: false)

        let result = try ctl(database, ["domains", "add", "example.com"])

        #expect(result == ProcessResult(
            status: 1, stdout: "",
            stderr: "mailcloakctl: database schema is at version 0 but this mailcloakctl needs version 1; "
                + "run: mailcloakctl migrate\n"))
    }
}
