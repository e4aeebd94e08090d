// mailcloakctl apps ... as a subprocess, with exact output. Hashes are
// checked for their argon2id parameters here and verified by Dovecot in
// DovecotTests.
import Foundation
import Testing

@Suite struct CtlAppsTests {
    static let usage = "usage: mailcloakctl apps add|secret APP_ID [--secret-stdin] | apps del|enable|disable APP_ID"
        + " | apps allow|disallow APP_ID ADDRESS | apps list\n"
    static let hashPrefix = "$argon2id$v=19$m=65536,t=3,p=1$"

    @Test func addWithSecretFromStandardInput() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["apps", "add", "Mailer", "--secret-stdin"], input: "correct horse battery\n")

        #expect(result == ProcessResult(status: 0, stdout: "added app mailer\n", stderr: ""))
        let hash = try #require(try database.rows("SELECT secret_hash FROM apps WHERE id = 'mailer'").first?.first ?? nil)
        #expect(hash.hasPrefix(Self.hashPrefix))
        // 16-byte salt and 32-byte hash in unpadded base64: 22 and 43 characters.
        #expect(hash.split(separator: "$").map(\.count) == [8, 4, 15, 22, 43])
    }

    @Test func addGeneratesSecretWhenNoneGiven() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["apps", "add", "mailer"])

        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(result.status == 0)
        #expect(lines.count == 3)
        #expect(lines.first == "added app mailer")
        let secretLine = String(lines.count > 1 ? lines[1] : "")
        #expect(secretLine.hasPrefix("secret: "))
        let secret = secretLine.dropFirst("secret: ".count)
        #expect(secret.count == 43)
        #expect(secret.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        #expect(result.stderr == "mailcloakctl: the secret is shown only once; store it now\n")
    }

    @Test func addDuplicateAppFails() throws {
        let database = try TestDatabase()
        _ = try ctl(database, ["apps", "add", "mailer", "--secret-stdin"], input: "first secret value")
        let before = try database.rows("SELECT secret_hash FROM apps")

        let result = try ctl(database, ["apps", "add", "MAILER", "--secret-stdin"], input: "second secret value")

        #expect(result == ProcessResult(status: 1, stdout: "", stderr: "mailcloakctl: app mailer already exists\n"))
        #expect(try database.rows("SELECT secret_hash FROM apps") == before)
    }

    @Test func addRejectsShortOrEmptySecret() throws {
        let database = try TestDatabase()

        let empty = try ctl(database, ["apps", "add", "mailer", "--secret-stdin"], input: "\n")
        let short = try ctl(database, ["apps", "add", "mailer", "--secret-stdin"], input: "abc")

        #expect(empty == ProcessResult(status: 1, stdout: "", stderr: "mailcloakctl: secret on standard input is empty\n"))
        #expect(short == ProcessResult(
            status: 1, stdout: "", stderr: "mailcloakctl: secret on standard input is shorter than 8 characters\n"))
        #expect(try database.rows("SELECT count(*) FROM apps") == [["0"]])
    }

    @Test func addInvalidAppIDIsUsageError() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["apps", "add", "my app"])

        #expect(result == ProcessResult(
            status: 2, stdout: "",
            stderr: "mailcloakctl: invalid app id \"my app\": only ASCII letters, digits and . - _ @ + are allowed\n"
                + Self.usage))
    }

    @Test func secretReplacesHash() throws {
        let database = try TestDatabase()
        _ = try ctl(database, ["apps", "add", "mailer", "--secret-stdin"], input: "first secret value")
        let before = try database.rows("SELECT secret_hash FROM apps")

        let result = try ctl(database, ["apps", "secret", "mailer", "--secret-stdin"], input: "second secret value")
        let missing = try ctl(database, ["apps", "secret", "other", "--secret-stdin"], input: "second secret value")

        #expect(result == ProcessResult(status: 0, stdout: "replaced secret of app mailer\n", stderr: ""))
        #expect(try database.rows("SELECT secret_hash FROM apps") != before)
        #expect(missing == ProcessResult(status: 1, stdout: "", stderr: "mailcloakctl: app other not found\n"))
    }

    @Test func disableEnableAndDeleteApp() throws {
        let database = try TestDatabase()
        _ = try ctl(database, ["apps", "add", "mailer", "--secret-stdin"], input: "first secret value")
        try database.sql("INSERT INTO app_senders (app_id, address) VALUES ('mailer', 'a@example.com')")

        let disabled = try ctl(database, ["apps", "disable", "Mailer"])
        let stateAfterDisable = try database.rows("SELECT enabled FROM apps")
        let enabled = try ctl(database, ["apps", "enable", "mailer"])
        let deleted = try ctl(database, ["apps", "del", "mailer"])
        let missing = try ctl(database, ["apps", "del", "mailer"])

        #expect(disabled == ProcessResult(status: 0, stdout: "disabled app mailer\n", stderr: ""))
        #expect(stateAfterDisable == [["f"]])
        #expect(enabled == ProcessResult(status: 0, stdout: "enabled app mailer\n", stderr: ""))
        #expect(deleted == ProcessResult(status: 0, stdout: "deleted app mailer\n", stderr: ""))
        #expect(missing == ProcessResult(status: 1, stdout: "", stderr: "mailcloakctl: app mailer not found\n"))
        #expect(try database.rows("SELECT count(*) FROM app_senders") == [["0"]])
    }

    @Test func allowAndDisallowSenders() throws {
        let database = try TestDatabase()
        _ = try ctl(database, ["apps", "add", "mailer", "--secret-stdin"], input: "first secret value")

        let allowed = try ctl(database, ["apps", "allow", "mailer", "NoReply@Example.com"])
        let again = try ctl(database, ["apps", "allow", "mailer", "noreply@example.com"])
        let disallowed = try ctl(database, ["apps", "disallow", "mailer", "noreply@example.com"])
        let missing = try ctl(database, ["apps", "disallow", "mailer", "noreply@example.com"])
        let unknownApp = try ctl(database, ["apps", "allow", "other", "noreply@example.com"])
        let badAddress = try ctl(database, ["apps", "allow", "mailer", "noreply"])

        #expect(allowed == ProcessResult(
            status: 0, stdout: "allowed sender noreply@example.com for app mailer\n", stderr: ""))
        #expect(again == ProcessResult(
            status: 0, stdout: "sender noreply@example.com is already allowed for app mailer\n", stderr: ""))
        #expect(disallowed == ProcessResult(
            status: 0, stdout: "disallowed sender noreply@example.com for app mailer\n", stderr: ""))
        #expect(missing == ProcessResult(
            status: 1, stdout: "", stderr: "mailcloakctl: sender noreply@example.com is not allowed for app mailer\n"))
        #expect(unknownApp == ProcessResult(status: 1, stdout: "", stderr: "mailcloakctl: app other not found\n"))
        #expect(badAddress == ProcessResult(
            status: 2, stdout: "",
            stderr: "mailcloakctl: invalid sender address \"noreply\": expected local-part@domain\n" + Self.usage))
    }

    @Test func allowReenablesDisabledSender() throws {
        let database = try TestDatabase()
        try database.sql("""
            INSERT INTO apps (id, secret_hash) VALUES ('mailer', 'x');
            INSERT INTO app_senders (app_id, address, enabled) VALUES ('mailer', 'a@example.com', false);
            """)

        let result = try ctl(database, ["apps", "allow", "mailer", "a@example.com"])

        #expect(result == ProcessResult(status: 0, stdout: "enabled sender a@example.com for app mailer\n", stderr: ""))
        #expect(try database.rows("SELECT enabled FROM app_senders") == [["t"]])
    }

    @Test func listAppsAsTableAndJSON() throws {
        let database = try TestDatabase()
        try database.sql("""
            INSERT INTO apps (id, secret_hash, enabled, created_at, updated_at) VALUES
                ('mailer', 'x', true, '2024-01-02T03:04:05Z', '2024-01-02T03:04:05Z'),
                ('billing', 'y', false, '2024-01-02T03:04:05Z', '2024-01-02T03:04:05Z');
            INSERT INTO app_senders (app_id, address, enabled) VALUES
                ('mailer', 'b@example.com', true), ('mailer', 'a@example.com', false);
            """)

        let table = try ctl(database, ["apps", "list"])
        let json = try ctl(database, ["apps", "list", "--json"])

        #expect(table == ProcessResult(status: 0, stdout: """
            APP      STATUS    SENDERS
            billing  disabled  -
            mailer   enabled   a@example.com (disabled), b@example.com

            """, stderr: ""))
        #expect(json == ProcessResult(status: 0, stdout: """
            [{"created_at":"2024-01-02T03:04:05Z","enabled":false,"id":"billing","senders":[],\
            "updated_at":"2024-01-02T03:04:05Z"},{"created_at":"2024-01-02T03:04:05Z","enabled":true,\
            "id":"mailer","senders":[{"address":"a@example.com","enabled":false},\
            {"address":"b@example.com","enabled":true}],"updated_at":"2024-01-02T03:04:05Z"}]

            """, stderr: ""))
    }

    @Test func secretStdinRejectedForList() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["apps", "list", "--secret-stdin"])

        #expect(result == ProcessResult(
            status: 2, stdout: "", stderr: "mailcloakctl: option --secret-stdin is not valid for apps list\n" + Self.usage))
    }
}
