// mailcloakctl domains ... as a subprocess, with exact output.
import Testing

@Suite struct CtlDomainsTests {
    static let usage = "usage: mailcloakctl domains add|del|enable|disable DOMAIN | domains list\n"
    static let fixedTime = "2024-01-02T03:04:05Z"

    @Test func addFoldsCaseAndTrailingDot() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["domains", "add", "Example.COM."])

        #expect(result == ProcessResult(status: 0, stdout: "added domain example.com\n", stderr: ""))
        #expect(try database.rows("SELECT name, enabled FROM domains") == [["example.com", "t"]])
    }

    @Test func addDuplicateFails() throws {
        let database = try TestDatabase()
        _ = try ctl(database, ["domains", "add", "example.com"])

        let result = try ctl(database, ["domains", "add", "EXAMPLE.com"])

        #expect(result == ProcessResult(status: 1, stdout: "", stderr: "mailcloakctl: domain example.com already exists\n"))
    }

    @Test func addInvalidDomainIsUsageError() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["domains", "add", "bad..example"])

        #expect(result == ProcessResult(
            status: 2, stdout: "", stderr: "mailcloakctl: invalid domain \"bad..example\": empty label\n" + Self.usage))
    }

    @Test func addWithoutDomainIsUsageError() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["domains", "add"])

        #expect(result == ProcessResult(status: 2, stdout: "", stderr: "mailcloakctl: missing DOMAIN\n" + Self.usage))
    }

    @Test func disableAndEnableDomain() throws {
        let database = try TestDatabase()
        _ = try ctl(database, ["domains", "add", "example.com"])

        let disabled = try ctl(database, ["domains", "disable", "example.com"])
        let stateAfterDisable = try database.rows("SELECT enabled FROM domains")
        let enabled = try ctl(database, ["domains", "enable", "example.com"])

        #expect(disabled == ProcessResult(status: 0, stdout: "disabled domain example.com\n", stderr: ""))
        #expect(stateAfterDisable == [["f"]])
        #expect(enabled == ProcessResult(status: 0, stdout: "enabled domain example.com\n", stderr: ""))
        #expect(try database.rows("SELECT enabled FROM domains") == [["t"]])
    }

    @Test func enableUnknownDomainFails() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["domains", "enable", "nowhere.example"])

        #expect(result == ProcessResult(status: 1, stdout: "", stderr: "mailcloakctl: domain nowhere.example not found\n"))
    }

    @Test func deleteDomainWithAliasesFails() throws {
        let database = try TestDatabase()
        _ = try ctl(database, ["domains", "add", "example.com"])
        _ = try ctl(database, ["aliases", "add", "a@example.com", "bob"])

        let result = try ctl(database, ["domains", "del", "example.com"])

        #expect(result == ProcessResult(
            status: 1, stdout: "", stderr: "mailcloakctl: domain example.com still has 1 alias; delete it first\n"))
        #expect(try database.rows("SELECT name FROM domains") == [["example.com"]])
    }

    @Test func deleteDomain() throws {
        let database = try TestDatabase()
        _ = try ctl(database, ["domains", "add", "example.com"])

        let result = try ctl(database, ["domains", "del", "example.com"])
        let again = try ctl(database, ["domains", "del", "example.com"])

        #expect(result == ProcessResult(status: 0, stdout: "deleted domain example.com\n", stderr: ""))
        #expect(again == ProcessResult(status: 1, stdout: "", stderr: "mailcloakctl: domain example.com not found\n"))
    }

    @Test func listDomainsAsTable() throws {
        let database = try TestDatabase()
        try database.sql("""
            INSERT INTO domains (name, enabled) VALUES ('example.com', true), ('b.example', false);
            INSERT INTO aliases (address, username) VALUES ('a@example.com', 'bob'), ('c@example.com', 'carol');
            """)

        let result = try ctl(database, ["domains", "list"])

        #expect(result == ProcessResult(status: 0, stdout: """
            DOMAIN       STATUS    ALIASES
            b.example    disabled  0
            example.com  enabled   2

            """, stderr: ""))
    }

    @Test func listNoDomains() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["domains", "list"])

        #expect(result == ProcessResult(status: 0, stdout: "no domains\n", stderr: ""))
    }

    @Test func listDomainsAsJSON() throws {
        let database = try TestDatabase()
        try database.sql("""
            INSERT INTO domains (name, enabled, created_at, updated_at)
            VALUES ('example.com', true, '\(Self.fixedTime)', '\(Self.fixedTime)'),
                   ('b.example', false, '\(Self.fixedTime)', '2024-02-03T04:05:06Z');
            """)

        let result = try ctl(database, ["--json", "domains", "list"])
        let empty = try TestDatabase()
        let emptyResult = try ctl(empty, ["domains", "list", "--json"])

        #expect(result == ProcessResult(status: 0, stdout: """
            [{"aliases":0,"created_at":"2024-01-02T03:04:05Z","enabled":false,"name":"b.example",\
            "updated_at":"2024-02-03T04:05:06Z"},{"aliases":0,"created_at":"2024-01-02T03:04:05Z",\
            "enabled":true,"name":"example.com","updated_at":"2024-01-02T03:04:05Z"}]

            """, stderr: ""))
        #expect(emptyResult == ProcessResult(status: 0, stdout: "[]\n", stderr: ""))
    }

    @Test func listRejectsAliasOptions() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["domains", "list", "--user", "bob"])

        #expect(result == ProcessResult(
            status: 2, stdout: "", stderr: "mailcloakctl: option --user is not valid for domains list\n" + Self.usage))
    }
}
