// SnapshotStore against a real PostgreSQL: what a snapshot contains,
// refresh through NOTIFY, surviving a terminated connection, waiting for
// migrations, and the one-shot database check.
import Config
import Foundation
import Model
import Store
import Testing

@Suite struct SnapshotStoreTests {
    static let seed = """
        INSERT INTO domains (name, enabled) VALUES ('example.com', true), ('old.example', false);
        INSERT INTO aliases (address, username, enabled) VALUES
            ('sales@example.com', 'carol', true), ('gone@example.com', 'dave', false),
            ('"john doe"@old.example', 'john', true);
        INSERT INTO apps (id, secret_hash, enabled) VALUES ('mailer', 'x', true), ('legacy', 'y', false);
        INSERT INTO app_senders (app_id, address, enabled) VALUES
            ('mailer', 'noreply@example.com', true), ('mailer', 'old@example.com', false),
            ('legacy', 'legacy@example.com', true);
        """

    @Test func snapshotLoadsAllTables() throws {
        let database = try TestDatabase()
        try database.sql(Self.seed)
        let store = SnapshotStore(config: database.storeConfig())
        store.start()
        defer { store.stop() }

        #expect(store.waitForFirstSnapshot(timeout: 10))
        let snapshot = try #require(store.current)
        let sales = MailAddress("sales@example.com")!
        let gone = MailAddress("gone@example.com")!
        let quoted = MailAddress("\"John Doe\"@old.example")!

        #expect(snapshot.domains == [
            "example.com": DomainEntry(name: "example.com", enabled: true),
            "old.example": DomainEntry(name: "old.example", enabled: false),
        ])
        #expect(snapshot.aliases[sales] == AliasEntry(address: sales, username: "carol", enabled: true))
        #expect(snapshot.aliases[gone] == AliasEntry(address: gone, username: "dave", enabled: false))
        #expect(snapshot.aliases[quoted] == AliasEntry(address: quoted, username: "john", enabled: true))
        #expect(snapshot.aliases.count == 3)
        #expect(snapshot.apps["mailer"] == AppEntry(
            id: "mailer", enabled: true, senders: [MailAddress("noreply@example.com")!]))
        #expect(snapshot.apps["legacy"] == AppEntry(
            id: "legacy", enabled: false, senders: [MailAddress("legacy@example.com")!]))
        #expect(store.status.counts == SnapshotCounts(domains: 2, aliases: 3, apps: 2, appSenders: 2))
        #expect(store.status.connected)
        #expect(store.status.schemaVersion == SchemaCheck.expectedVersion)
        #expect(store.status.lastError == nil)
    }

    @Test func notifyRefreshesSnapshot() throws {
        let database = try TestDatabase()
        try database.sql("INSERT INTO domains (name) VALUES ('example.com')")
        let store = SnapshotStore(config: database.storeConfig())
        store.start()
        defer { store.stop() }
        #expect(store.waitForFirstSnapshot(timeout: 10))

        try database.sql("INSERT INTO aliases (address, username) VALUES ('new@example.com', 'erin')")

        let address = MailAddress("new@example.com")!
        #expect(eventually { store.current?.enabledAlias(address) != nil })
        #expect(store.current?.enabledAlias(address)?.username == "erin")
    }

    @Test func terminatedConnectionReconnects() throws {
        let database = try TestDatabase()
        try database.sql(Self.seed)
        let store = SnapshotStore(config: database.storeConfig())
        store.start()
        defer { store.stop() }
        #expect(store.waitForFirstSnapshot(timeout: 10))

        let terminated = try database.rows("""
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = '\(database.name)' AND application_name = 'mailcloak'
            """)
        #expect(terminated == [["t"]])
        #expect(store.current?.aliases.count == 3)

        #expect(eventually { store.status.connects >= 2 && store.status.connected })
        try database.sql("INSERT INTO aliases (address, username) VALUES ('after@example.com', 'frank')")
        let address = MailAddress("after@example.com")!
        #expect(eventually { store.current?.enabledAlias(address) != nil })
        #expect(store.current?.aliases.count == 4)
    }

    @Test func unmigratedDatabaseWaitsForMigrate() throws {
        let database = try TestDatabase(migrated: false)
        let store = SnapshotStore(config: database.storeConfig())
        store.start()
        defer { store.stop() }

        #expect(eventually { store.status.lastError != nil })
        #expect(store.status.lastError == StoreError.schemaBehind(found: 0, expected: 1).description)
        #expect(store.status.schemaVersion == 0)
        #expect(store.current == nil)

        _ = try Migrations.migrate(try database.connect())

        #expect(store.waitForFirstSnapshot(timeout: 10))
        #expect(store.status.schemaVersion == 1)
    }

    @Test func stopKeepsLastSnapshot() throws {
        let database = try TestDatabase()
        try database.sql(Self.seed)
        let store = SnapshotStore(config: database.storeConfig())
        store.start()
        #expect(store.waitForFirstSnapshot(timeout: 10))

        store.stop()

        #expect(store.current?.domains.count == 2)
        #expect(store.status.connected == false)
        #expect(try database.rows("""
            SELECT count(*) FROM pg_stat_activity
            WHERE datname = '\(database.name)' AND application_name = 'mailcloak'
            """) == [["0"]])
    }

    @Test func unreachableServerKeepsRetrying() throws {
        var config = DatabaseConfig()
        config.url = "postgresql://admin:hunter22secret@127.0.0.1:1/mailcloak"
        config.maxReconnectDelay = 0.2
        let store = SnapshotStore(config: config)
        store.start()
        defer { store.stop() }

        #expect(eventually { store.status.lastError != nil })
        let error = try #require(store.status.lastError)
        #expect(error.hasPrefix("cannot connect to PostgreSQL at 127.0.0.1:1 (database mailcloak, user admin): "))
        #expect(!error.contains("hunter22secret"))
        #expect(store.waitForFirstSnapshot(timeout: 0.1) == false)
    }

    @Test func checkDatabaseReportsVersions() throws {
        let database = try TestDatabase()
        let version = try #require(try database.rows("SHOW server_version").first?.first ?? nil)
        var config = DatabaseConfig()
        config.url = database.url

        let result = checkDatabase(config: config)

        let short = String(version.prefix { $0 != " " })
        #expect(result == .success("PostgreSQL \(short) reachable, schema version 1 of 1"))
    }

    @Test func checkDatabaseRejectsOldSchema() throws {
        let database = try TestDatabase(migrated: false)
        var config = DatabaseConfig()
        config.url = database.url

        #expect(checkDatabase(config: config) == .failure(.schemaBehind(found: 0, expected: 1)))
    }

    @Test func checkDatabaseHidesPassword() {
        var config = DatabaseConfig()
        config.url = "host=127.0.0.1 port=1 dbname=mailcloak user=admin password=hunter22secret"

        let result = checkDatabase(config: config)

        guard case .failure(let error) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(error.description.hasPrefix(
            "cannot connect to PostgreSQL at 127.0.0.1:1 (database mailcloak, user admin): "))
        #expect(!error.description.contains("hunter22secret"))
    }
}
