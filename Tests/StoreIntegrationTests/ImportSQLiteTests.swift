// mailcloakctl import-sqlite with first-generation state.db files built by
// the sqlite3 command-line tool: mixed case, disabled rows, a missing
// domains table, bad rows, dry runs and repeated imports.
import Foundation
import Testing

@Suite struct ImportSQLiteTests {
    static let firstGenerationTables = """
        CREATE TABLE aliases (alias_email TEXT PRIMARY KEY, username TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1, updated_at INTEGER NOT NULL DEFAULT (strftime('%s','now')));
        CREATE TABLE apps (app_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL);
        CREATE TABLE app_from (app_id TEXT NOT NULL, from_addr TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (app_id, from_addr));
        """
    static let legacyHash = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA"
    static let rows = """
        INSERT INTO aliases VALUES ('Sales@Shop.Example', 'Carol', 1, 1700000000),
            ('old@shop.example', 'dave', 0, 1700000001), ('Info@Example.COM', 'erin', 1, 1700000002);
        INSERT INTO apps VALUES ('Mailer', '\(legacyHash)', 1, 1690000000), ('retired', 'x', 0, 1690000001);
        INSERT INTO app_from VALUES ('Mailer', 'NoReply@Shop.Example', 1), ('Mailer', 'old@shop.example', 0);
        """

    /// Builds a state.db with the sqlite3 tool and returns its path.
    static func makeStateDatabase(_ folder: TemporaryFolder, _ sql: String) throws -> String {
        let path = folder.path + "/state.db"
        let result = try runProcess("/usr/bin/sqlite3", [path], input: sql)
        guard result.status == 0 else { throw TestSetupError(description: "sqlite3 failed: \(result)") }
        return path
    }

    @Test func importWithDomainsTable() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = try Self.makeStateDatabase(folder, """
            CREATE TABLE domains (domain TEXT PRIMARY KEY, enabled INTEGER NOT NULL DEFAULT 1);
            INSERT INTO domains VALUES ('Shop.Example', 1), ('example.com', 0);
            \(Self.firstGenerationTables)
            \(Self.rows)
            """)

        let result = try ctl(database, ["import-sqlite", path])

        #expect(result == ProcessResult(status: 0, stdout: """
            domains: 2 added, 0 already present
            aliases: 3 added, 0 already present
            apps: 2 added, 0 already present
            app senders: 2 added, 0 already present
            imported \(path)

            """, stderr: ""))
        #expect(try database.rows("SELECT name, enabled FROM domains ORDER BY name")
            == [["example.com", "f"], ["shop.example", "t"]])
        #expect(try database.rows("""
            SELECT address, username, enabled, extract(epoch FROM updated_at)::bigint FROM aliases ORDER BY address
            """) == [
                ["info@example.com", "erin", "t", "1700000002"],
                ["old@shop.example", "dave", "f", "1700000001"],
                ["sales@shop.example", "carol", "t", "1700000000"],
            ])
        #expect(try database.rows("""
            SELECT id, secret_hash, enabled, extract(epoch FROM created_at)::bigint FROM apps ORDER BY id
            """) == [["mailer", Self.legacyHash, "t", "1690000000"], ["retired", "x", "f", "1690000001"]])
        #expect(try database.rows("SELECT app_id, address, enabled FROM app_senders ORDER BY address")
            == [["mailer", "noreply@shop.example", "t"], ["mailer", "old@shop.example", "f"]])
    }

    @Test func missingDomainsTableDerivesDomains() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = try Self.makeStateDatabase(folder, Self.firstGenerationTables + Self.rows)

        let result = try ctl(database, ["import-sqlite", path])

        #expect(result == ProcessResult(status: 0, stdout: """
            no domains table in \(path): created 2 domains from alias addresses
            domains: 2 added, 0 already present
            aliases: 3 added, 0 already present
            apps: 2 added, 0 already present
            app senders: 2 added, 0 already present
            imported \(path)

            """, stderr: ""))
        #expect(try database.rows("SELECT name, enabled FROM domains ORDER BY name")
            == [["example.com", "t"], ["shop.example", "t"]])
    }

    @Test func domainsNameColumnWithoutEnabled() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = try Self.makeStateDatabase(folder, """
            CREATE TABLE domains (name TEXT PRIMARY KEY);
            INSERT INTO domains VALUES ('Example.ORG');
            CREATE TABLE aliases (alias_email TEXT PRIMARY KEY, username TEXT NOT NULL);
            INSERT INTO aliases VALUES ('a@example.org', 'bob');
            """)

        let result = try ctl(database, ["import-sqlite", path])

        #expect(result == ProcessResult(status: 0, stdout: """
            no apps table in \(path)
            no app_from table in \(path)
            domains: 1 added, 0 already present
            aliases: 1 added, 0 already present
            apps: 0 added, 0 already present
            app senders: 0 added, 0 already present
            imported \(path)

            """, stderr: ""))
        #expect(try database.rows("SELECT name, enabled FROM domains") == [["example.org", "t"]])
        #expect(try database.rows("SELECT address, username, enabled FROM aliases") == [["a@example.org", "bob", "t"]])
    }

    @Test func badRowWritesNothing() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = try Self.makeStateDatabase(folder, Self.firstGenerationTables + Self.rows + """
            INSERT INTO aliases VALUES ('no-at-sign', 'frank', 1, 1700000003);
            """)

        let result = try ctl(database, ["import-sqlite", path])

        #expect(result == ProcessResult(
            status: 1, stdout: "",
            stderr: "mailcloakctl: invalid row in table aliases of \(path): alias_email \"no-at-sign\": "
                + "expected local-part@domain; nothing was written\n"))
        #expect(try database.rows("SELECT (SELECT count(*) FROM domains) + (SELECT count(*) FROM aliases)"
            + " + (SELECT count(*) FROM apps) + (SELECT count(*) FROM app_senders)") == [["0"]])
    }

    @Test func rejectedRowRollsBackEverything() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = try Self.makeStateDatabase(folder, """
            CREATE TABLE domains (domain TEXT PRIMARY KEY, enabled INTEGER NOT NULL DEFAULT 1);
            INSERT INTO domains VALUES ('shop.example', 1);
            \(Self.firstGenerationTables)
            \(Self.rows)
            """)

        let result = try ctl(database, ["import-sqlite", path])

        #expect(result == ProcessResult(
            status: 1, stdout: "",
            stderr: "mailcloakctl: import rejected aliases row info@example.com: its domain is not a local domain "
                + "(add it to the domains table or with mailcloakctl domains add); nothing was written\n"))
        #expect(try database.rows("SELECT (SELECT count(*) FROM domains) + (SELECT count(*) FROM aliases)") == [["0"]])
    }

    @Test func conflictingFoldedRowsFail() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = try Self.makeStateDatabase(folder, Self.firstGenerationTables + """
            INSERT INTO aliases VALUES ('Sales@shop.example', 'carol', 1, 1), ('sales@SHOP.example', 'dave', 1, 2);
            """)

        let result = try ctl(database, ["import-sqlite", path])

        #expect(result == ProcessResult(
            status: 1, stdout: "",
            stderr: "mailcloakctl: conflicting rows in table aliases: \"Sales@shop.example\" and "
                + "\"sales@SHOP.example\" are both sales@shop.example but differ; fix one of them, "
                + "nothing was written\n"))
        #expect(try database.rows("SELECT count(*) FROM aliases") == [["0"]])
    }

    @Test func derivedDomainsSkipSenderDomains() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = try Self.makeStateDatabase(folder, Self.firstGenerationTables + Self.rows + """
            INSERT INTO app_from VALUES ('Mailer', 'ourcompany@gmail.com', 1);
            """)

        let result = try ctl(database, ["import-sqlite", path])

        #expect(result.status == 0)
        #expect(try database.rows("SELECT name FROM domains ORDER BY name") == [["example.com"], ["shop.example"]])
        #expect(try database.rows("SELECT address FROM app_senders WHERE address LIKE '%gmail.com'")
            == [["ourcompany@gmail.com"]])
    }

    @Test func dryRunWritesNothing() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = try Self.makeStateDatabase(folder, Self.firstGenerationTables + Self.rows)

        let result = try ctl(database, ["import-sqlite", "--dry-run", path])

        #expect(result == ProcessResult(status: 0, stdout: """
            no domains table in \(path): created 2 domains from alias addresses
            domains: 2 added, 0 already present
            aliases: 3 added, 0 already present
            apps: 2 added, 0 already present
            app senders: 2 added, 0 already present
            dry run: rolled back, nothing was written

            """, stderr: ""))
        #expect(try database.rows("SELECT (SELECT count(*) FROM domains) + (SELECT count(*) FROM aliases)") == [["0"]])
    }

    @Test func repeatedImportKeepsExistingRows() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = try Self.makeStateDatabase(folder, Self.firstGenerationTables + Self.rows)
        try database.sql("""
            INSERT INTO domains (name) VALUES ('shop.example');
            INSERT INTO aliases (address, username) VALUES ('sales@shop.example', 'zoe');
            """)

        let first = try ctl(database, ["import-sqlite", path])
        let second = try ctl(database, ["import-sqlite", path])

        #expect(first.stdout.contains("domains: 1 added, 1 already present\naliases: 2 added, 1 already present\n"))
        #expect(second.stdout.contains("""
            domains: 0 added, 2 already present
            aliases: 0 added, 3 already present
            apps: 0 added, 2 already present
            app senders: 0 added, 2 already present

            """))
        #expect(try database.rows("SELECT username FROM aliases WHERE address = 'sales@shop.example'") == [["zoe"]])
    }

    @Test func missingFileFails() throws {
        let database = try TestDatabase()

        let result = try ctl(database, ["import-sqlite", "/nonexistent/state.db"])

        #expect(result == ProcessResult(
            status: 1, stdout: "", stderr: "mailcloakctl: cannot read /nonexistent/state.db: No such file or directory\n"))
    }

    @Test func fileWithoutKnownTablesFails() throws {
        let database = try TestDatabase()
        let folder = try TemporaryFolder()
        let path = try Self.makeStateDatabase(folder, "CREATE TABLE unrelated (x);")

        let result = try ctl(database, ["import-sqlite", path])

        #expect(result == ProcessResult(
            status: 1, stdout: "",
            stderr: "mailcloakctl: \(path) has none of the tables domains, aliases, apps, app_from; "
                + "is it a mailcloak state.db?\n"))
    }
}
