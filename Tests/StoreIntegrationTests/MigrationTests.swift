// Schema migrations against a real PostgreSQL: idempotence, concurrent
// runs, the objects they create, and the version check.
import Dispatch
import Foundation
import Store
import Locking
import Testing

@Suite struct MigrationTests {
    @Test func migrateTwiceIsIdempotent() throws {
        let database = try TestDatabase(migrated: false)
        let connection = try database.connect()

        let first = try Migrations.migrate(connection)
        let second = try Migrations.migrate(connection)

        #expect(first.map(\.version) == Migrations.all.map(\.version))
        #expect(second.isEmpty)
        #expect(try Migrations.currentVersion(connection) == Migrations.latestVersion)
        #expect(try database.rows("SELECT count(*) FROM schema_migrations") == [[String(Migrations.all.count)]])
    }

    @Test func concurrentMigrationsApplyOnce() throws {
        let database = try TestDatabase(migrated: false)
        let appliedCount = Locked(0)
        let failures = Locked<[String]>([])

        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            do {
                let connection = try database.connect()
                let applied = try Migrations.migrate(connection)
                appliedCount.withLock { $0 += applied.count }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }

        #expect(failures.withLock { $0 } == [])
        #expect(appliedCount.withLock { $0 } == Migrations.all.count)
        #expect(try database.rows("SELECT version FROM schema_migrations ORDER BY version")
            == Migrations.all.map { [String($0.version)] })
    }

    @Test func concurrentCtlMigrateRunsSucceed() throws {
        let database = try TestDatabase(migrated: false)
        let results = Locked<[ProcessResult]>([])

        DispatchQueue.concurrentPerform(iterations: 3) { _ in
            let result = (try? ctl(database, ["migrate"])) ?? ProcessResult(status: -1, stdout: "", stderr: "spawn failed")
            results.withLock { $0.append(result) }
        }

        let all = results.withLock { $0 }
        let appliedOutput = "applied migration 1: domains, aliases, apps and app senders\nschema version 1\n"
        #expect(all.map(\.status) == [0, 0, 0])
        #expect(all.filter { $0.stdout == appliedOutput }.count == 1)
        #expect(all.filter { $0.stdout == "schema version 1, up to date\n" }.count == 2)
        #expect(all.map(\.stderr) == ["", "", ""])
    }

    @Test func migrationCreatesTablesAndTriggers() throws {
        let database = try TestDatabase()

        let tables = try database.rows("""
            SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename
            """)
        let triggers = try database.rows("""
            SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE '%notify' ORDER BY tgname
            """)

        #expect(tables == [["aliases"], ["app_senders"], ["apps"], ["domains"], ["schema_migrations"]])
        #expect(triggers == [["aliases_notify"], ["app_senders_notify"], ["apps_notify"], ["domains_notify"]])
    }

    @Test func aliasOutsideDomainsIsRejected() throws {
        let database = try TestDatabase()
        try database.sql("INSERT INTO domains (name) VALUES ('example.com')")

        let error = try #require(throws: StoreError.self) {
            try database.sql("INSERT INTO aliases (address, username) VALUES ('a@example.org', 'bob')")
        }
        #expect(error.sqlState == "23503")
    }

    @Test func updateTouchesUpdatedAt() throws {
        let database = try TestDatabase()
        try database.sql("""
            INSERT INTO domains (name, created_at, updated_at)
            VALUES ('example.com', '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z')
            """)

        try database.sql("UPDATE domains SET enabled = false WHERE name = 'example.com'")

        let rows = try database.rows("SELECT updated_at > '2021-01-01' FROM domains")
        #expect(rows == [["t"]])
    }

    @Test func schemaCheckClassifiesVersions() {
        let expected = SchemaCheck.expectedVersion

        #expect(SchemaCheck(found: expected) == .current(version: expected))
        #expect(SchemaCheck(found: 0) == .behind(found: 0, expected: expected))
        #expect(SchemaCheck(found: expected + 1) == .ahead(found: expected + 1, expected: expected))
        #expect(SchemaCheck(found: 0).isUsable == false)
        #expect(SchemaCheck(found: expected + 1).isUsable == true)
    }
}
