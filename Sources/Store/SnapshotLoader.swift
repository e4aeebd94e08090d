// Reads domains, aliases, apps and app senders in one REPEATABLE READ,
// READ ONLY transaction, so the snapshot is one consistent state even while
// the admin CLI writes. Rows that do not parse (an alias without @, written
// by hand in SQL) are skipped and counted, never fatal.
import Model

/// The result of one snapshot load.
struct LoadedSnapshot: Sendable {
    let snapshot: Snapshot
    let counts: SnapshotCounts
    /// Rows that could not be parsed, with the first one as an example.
    let skippedRows: Int
    let firstSkipped: String?
}

/// Row counts of a snapshot, as the status reports them.
public struct SnapshotCounts: Sendable, Equatable {
    public var domains: Int
    public var aliases: Int
    public var apps: Int
    /// Enabled app sender entries.
    public var appSenders: Int

    public init(domains: Int = 0, aliases: Int = 0, apps: Int = 0, appSenders: Int = 0) {
        self.domains = domains
        self.aliases = aliases
        self.apps = apps
        self.appSenders = appSenders
    }
}

enum SnapshotLoader {
    /// Loads a snapshot on `connection`, which must be outside a transaction.
    static func load(_ connection: PostgresConnection) throws(StoreError) -> LoadedSnapshot {
        try connection.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") { () throws(StoreError) in
            var skipped: [String] = []
            let domains = try loadDomains(connection)
            let aliases = try loadAliases(connection, skipped: &skipped)
            let (apps, senderCount) = try loadApps(connection, skipped: &skipped)
            let snapshot = Snapshot(domains: domains, aliases: aliases, apps: apps, loadedAt: wallClockSeconds())
            let counts = SnapshotCounts(
                domains: domains.count, aliases: aliases.count, apps: apps.count, appSenders: senderCount)
            return LoadedSnapshot(
                snapshot: snapshot, counts: counts, skippedRows: skipped.count, firstSkipped: skipped.first)
        }
    }

    private static func loadDomains(_ connection: PostgresConnection) throws(StoreError) -> [DomainEntry] {
        let rows = try connection.execute("SELECT name, enabled FROM domains")
        var domains: [DomainEntry] = []
        domains.reserveCapacity(rows.count)
        for row in 0..<rows.count {
            domains.append(DomainEntry(name: try rows.string(row, "name"), enabled: try rows.bool(row, "enabled")))
        }
        return domains
    }

    private static func loadAliases(
        _ connection: PostgresConnection, skipped: inout [String]
    ) throws(StoreError) -> [AliasEntry] {
        let rows = try connection.execute("SELECT address, username, enabled FROM aliases")
        var aliases: [AliasEntry] = []
        aliases.reserveCapacity(rows.count)
        for row in 0..<rows.count {
            let text = try rows.string(row, "address")
            guard let address = MailAddress(text) else {
                skipped.append("aliases.address \(text)")
                continue
            }
            let username = try rows.string(row, "username")
            aliases.append(AliasEntry(address: address, username: username, enabled: try rows.bool(row, "enabled")))
        }
        return aliases
    }

    private static func loadApps(
        _ connection: PostgresConnection, skipped: inout [String]
    ) throws(StoreError) -> (apps: [AppEntry], senderCount: Int) {
        let senderRows = try connection.execute("SELECT app_id, address FROM app_senders WHERE enabled")
        var senders: [String: Set<MailAddress>] = [:]
        var senderCount = 0
        for row in 0..<senderRows.count {
            let text = try senderRows.string(row, "address")
            guard let address = MailAddress(text) else {
                skipped.append("app_senders.address \(text)")
                continue
            }
            senders[try senderRows.string(row, "app_id"), default: []].insert(address)
            senderCount += 1
        }

        let appRows = try connection.execute("SELECT id, enabled FROM apps")
        var apps: [AppEntry] = []
        apps.reserveCapacity(appRows.count)
        for row in 0..<appRows.count {
            let id = try appRows.string(row, "id")
            apps.append(AppEntry(id: id, enabled: try appRows.bool(row, "enabled"), senders: senders[id] ?? []))
        }
        return (apps, senderCount)
    }
}
