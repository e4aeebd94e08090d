// mailcloakctl aliases ... as a subprocess, with exact output.
import Testing

@Suite struct CtlAliasesTests {
    static let usage = "usage: mailcloakctl aliases add ALIAS USERNAME | aliases del|enable|disable ALIAS"
        + " | aliases list [--user USERNAME] [--domain DOMAIN]\n"

    /// A migrated database with two local domains.
    static func databaseWithDomains() throws -> TestDatabase {
        let database = try TestDatabase()
        try database.sql("INSERT INTO domains (name) VALUES ('example.com'), ('example.org')")
        return database
    }

    @Test func addFoldsAddressAndUsername() throws {
        let database = try Self.databaseWithDomains()

        let result = try ctl(database, ["aliases", "add", "Sales@Example.COM", "Carol"])

        #expect(result == ProcessResult(status: 0, stdout: "added alias sales@example.com for user carol\n", stderr: ""))
        #expect(try database.rows("SELECT address, username, domain, enabled FROM aliases")
            == [["sales@example.com", "carol", "example.com", "t"]])
    }

    @Test func addDuplicateAliasFails() throws {
        let database = try Self.databaseWithDomains()
        _ = try ctl(database, ["aliases", "add", "sales@example.com", "carol"])

        let result = try ctl(database, ["aliases", "add", "SALES@example.com", "dave"])

        #expect(result == ProcessResult(
            status: 1, stdout: "", stderr: "mailcloakctl: alias sales@example.com already exists (username carol)\n"))
        #expect(try database.rows("SELECT username FROM aliases") == [["carol"]])
    }

    @Test func addInUnknownDomainFails() throws {
        let database = try Self.databaseWithDomains()

        let result = try ctl(database, ["aliases", "add", "sales@example.net", "carol"])

        #expect(result == ProcessResult(
            status: 1, stdout: "",
            stderr: "mailcloakctl: domain example.net is not a local domain; add it first with: "
                + "mailcloakctl domains add example.net\n"))
        #expect(try database.rows("SELECT count(*) FROM aliases") == [["0"]])
    }

    @Test func addBadAddressIsUsageError() throws {
        let database = try Self.databaseWithDomains()

        let result = try ctl(database, ["aliases", "add", "sales.example.com", "carol"])

        #expect(result == ProcessResult(
            status: 2, stdout: "",
            stderr: "mailcloakctl: invalid alias address \"sales.example.com\": expected local-part@domain\n" + Self.usage))
    }

    @Test func addUnquotedAtInLocalPartIsUsageError() throws {
        let database = try Self.databaseWithDomains()

        let result = try ctl(database, ["aliases", "add", "a@b@example.com", "carol"])

        #expect(result == ProcessResult(
            status: 2, stdout: "",
            stderr: "mailcloakctl: invalid alias address \"a@b@example.com\": @ in the local part needs quotes\n"
                + Self.usage))
        #expect(try database.rows("SELECT count(*) FROM aliases") == [["0"]])
    }

    @Test func addInvalidUTF8AddressIsUsageError() throws {
        let database = try Self.databaseWithDomains()

        let result = try ctl(database, ["aliases", "add", "a\u{FFFD}@example.com", "carol"])

        #expect(result.status == 2)
        #expect(result.stderr.hasPrefix("mailcloakctl: invalid alias address \"a\u{FFFD}@example.com\": not valid UTF-8\n"))
        #expect(try database.rows("SELECT count(*) FROM aliases") == [["0"]])
    }

    @Test func addBadUsernameIsUsageError() throws {
        let database = try Self.databaseWithDomains()

        let result = try ctl(database, ["aliases", "add", "sales@example.com", "carol smith"])

        #expect(result == ProcessResult(
            status: 2, stdout: "",
            stderr: "mailcloakctl: invalid username \"carol smith\": contains a space or control character\n"
                + Self.usage))
    }

    @Test func addMissingUsernameIsUsageError() throws {
        let database = try Self.databaseWithDomains()

        let result = try ctl(database, ["aliases", "add", "sales@example.com"])

        #expect(result == ProcessResult(status: 2, stdout: "", stderr: "mailcloakctl: missing USERNAME\n" + Self.usage))
    }

    @Test func disableEnableAndDeleteAlias() throws {
        let database = try Self.databaseWithDomains()
        _ = try ctl(database, ["aliases", "add", "sales@example.com", "carol"])

        let disabled = try ctl(database, ["aliases", "disable", "Sales@example.com"])
        let stateAfterDisable = try database.rows("SELECT enabled FROM aliases")
        let enabled = try ctl(database, ["aliases", "enable", "sales@example.com"])
        let deleted = try ctl(database, ["aliases", "del", "sales@example.com"])
        let missing = try ctl(database, ["aliases", "del", "sales@example.com"])

        #expect(disabled == ProcessResult(status: 0, stdout: "disabled alias sales@example.com\n", stderr: ""))
        #expect(stateAfterDisable == [["f"]])
        #expect(enabled == ProcessResult(status: 0, stdout: "enabled alias sales@example.com\n", stderr: ""))
        #expect(deleted == ProcessResult(status: 0, stdout: "deleted alias sales@example.com\n", stderr: ""))
        #expect(missing == ProcessResult(status: 1, stdout: "", stderr: "mailcloakctl: alias sales@example.com not found\n"))
    }

    @Test func listFiltersByUserAndDomain() throws {
        let database = try Self.databaseWithDomains()
        try database.sql("""
            INSERT INTO aliases (address, username, enabled) VALUES
                ('sales@example.com', 'carol', true), ('info@example.org', 'carol', false),
                ('abuse@example.com', 'dave', true);
            """)

        let all = try ctl(database, ["aliases", "list"])
        let carol = try ctl(database, ["aliases", "list", "--user", "Carol"])
        let carolCom = try ctl(database, ["aliases", "list", "--user=carol", "--domain", "example.com"])
        let nobody = try ctl(database, ["aliases", "list", "--user", "erin"])

        #expect(all == ProcessResult(status: 0, stdout: """
            ALIAS              USERNAME  STATUS
            abuse@example.com  dave      enabled
            info@example.org   carol     disabled
            sales@example.com  carol     enabled

            """, stderr: ""))
        #expect(carol == ProcessResult(status: 0, stdout: """
            ALIAS              USERNAME  STATUS
            info@example.org   carol     disabled
            sales@example.com  carol     enabled

            """, stderr: ""))
        #expect(carolCom == ProcessResult(status: 0, stdout: """
            ALIAS              USERNAME  STATUS
            sales@example.com  carol     enabled

            """, stderr: ""))
        #expect(nobody == ProcessResult(status: 0, stdout: "no aliases\n", stderr: ""))
    }

    @Test func listAliasesAsJSON() throws {
        let database = try Self.databaseWithDomains()
        try database.sql("""
            INSERT INTO aliases (address, username, enabled, created_at, updated_at)
            VALUES ('sales@example.com', 'carol', false, '2024-01-02T03:04:05Z', '2024-01-02T03:04:05Z')
            """)

        let result = try ctl(database, ["aliases", "list", "--json"])

        #expect(result == ProcessResult(status: 0, stdout: """
            [{"address":"sales@example.com","created_at":"2024-01-02T03:04:05Z","domain":"example.com",\
            "enabled":false,"updated_at":"2024-01-02T03:04:05Z","username":"carol"}]

            """, stderr: ""))
    }
}
