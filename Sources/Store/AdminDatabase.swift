// Reads and writes domains, aliases, apps and app senders for mailcloakctl.
// Every mutating call is one transaction: it checks what it needs (the
// alias's domain exists, the app exists) and writes, or changes nothing.
// Values arrive already validated and folded to lower case by the caller.

/// A domain as `domains list` shows it.
package struct DomainRecord: Sendable, Equatable {
    package var name: String
    package var enabled: Bool
    package var aliasCount: Int
    /// RFC 3339 UTC timestamps, as `2024-05-01T12:00:00Z`.
    package var createdAt: String
    package var updatedAt: String
}

/// An alias as `aliases list` shows it.
package struct AliasRecord: Sendable, Equatable {
    package var address: String
    package var username: String
    package var domain: String
    package var enabled: Bool
    package var createdAt: String
    package var updatedAt: String
}

/// One entry of an app's sender allow-list.
package struct SenderRecord: Sendable, Equatable {
    package var address: String
    package var enabled: Bool
}

/// An app as `apps list` shows it; the secret hash is never read back.
package struct AppRecord: Sendable, Equatable {
    package var id: String
    package var enabled: Bool
    package var senders: [SenderRecord]
    package var createdAt: String
    package var updatedAt: String
}

/// The change that `apps allow` made.
package enum AllowOutcome: Sendable, Equatable {
    case added
    case reenabled
    case alreadyAllowed
}

/// An admin session on one PostgreSQL connection.
package final class AdminDatabase {
    package let connection: PostgresConnection

    /// Connects for one mailcloakctl command.
    package init(url: String, connectTimeout: Double = 5, statementTimeout: Double = 60) throws(AdminError) {
        do {
            connection = try PostgresConnection(
                conninfo: url, applicationName: "mailcloakctl", connectTimeout: connectTimeout,
                statementTimeout: statementTimeout)
        } catch {
            throw .store(error)
        }
    }

    /// Fails unless the schema is at least the version this build writes.
    package func requireCurrentSchema() throws(AdminError) {
        let version = try run { () throws(StoreError) in try Migrations.currentVersion(connection) }
        if case .behind(let found, let expected) = SchemaCheck(found: version) {
            throw .schemaBehind(found: found, expected: expected)
        }
    }

    /// Applies pending migrations. - Returns: the applied ones and the resulting version.
    package func migrate() throws(AdminError) -> (applied: [Migration], version: Int) {
        try run { () throws(StoreError) in
            let applied = try Migrations.migrate(connection)
            return (applied, try Migrations.currentVersion(connection))
        }
    }

    /// Runs `body` in one transaction, turning store errors into admin errors.
    package func transaction<T>(_ body: () throws(AdminError) -> T) throws(AdminError) -> T {
        try execute("BEGIN")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            // The first error is the one raised. A failed ROLLBACK needs no report, because the server
            // aborts the transaction when the connection closes.
            if connection.isOpen { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
    }

    /// Rolls back the open transaction (for dry runs).
    package func rollback() throws(AdminError) {
        try execute("ROLLBACK")
    }

    /// Runs one statement, turning store errors into admin errors.
    @discardableResult
    package func execute(_ sql: String, _ parameters: [String?] = []) throws(AdminError) -> PostgresRows {
        try run { () throws(StoreError) in try connection.execute(sql, parameters) }
    }

    func run<T>(_ body: () throws(StoreError) -> T) throws(AdminError) -> T {
        do {
            return try body()
        } catch {
            throw .store(error)
        }
    }

    /// SQL that formats a timestamptz column as RFC 3339 UTC.
    static func utc(_ column: String) -> String {
        "to_char(\(column) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    }
}

// MARK: - Domains

extension AdminDatabase {
    package func addDomain(_ name: String) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let rows = try execute(
                "INSERT INTO domains (name) VALUES ($1) ON CONFLICT DO NOTHING RETURNING name", [name])
            if rows.count == 0 { throw .alreadyExists(kind: "domain", name: name) }
        }
    }

    package func deleteDomain(_ name: String) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let existing = try execute("SELECT 1 FROM domains WHERE name = $1 FOR UPDATE", [name])
            if existing.count == 0 { throw .notFound(kind: "domain", name: name) }
            let aliases = try execute("SELECT count(*) AS n FROM aliases WHERE domain = $1", [name])
            let count = try run { () throws(StoreError) in try aliases.int(0, "n") }
            if count > 0 { throw .domainInUse(domain: name, aliases: count) }
            try execute("DELETE FROM domains WHERE name = $1", [name])
        }
    }

    package func setDomainEnabled(_ name: String, _ enabled: Bool) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let rows = try execute(
                "UPDATE domains SET enabled = $2 WHERE name = $1 RETURNING name", [name, enabled ? "t" : "f"])
            if rows.count == 0 { throw .notFound(kind: "domain", name: name) }
        }
    }

    package func listDomains() throws(AdminError) -> [DomainRecord] {
        let rows = try execute("""
            SELECT d.name, d.enabled, (SELECT count(*) FROM aliases a WHERE a.domain = d.name) AS aliases,
                   \(Self.utc("d.created_at")) AS created_at, \(Self.utc("d.updated_at")) AS updated_at
            FROM domains d ORDER BY d.name
            """)
        return try run { () throws(StoreError) in
            var records: [DomainRecord] = []
            for row in 0..<rows.count {
                records.append(DomainRecord(
                    name: try rows.string(row, "name"), enabled: try rows.bool(row, "enabled"),
                    aliasCount: try rows.int(row, "aliases"), createdAt: try rows.string(row, "created_at"),
                    updatedAt: try rows.string(row, "updated_at")))
            }
            return records
        }
    }
}

// MARK: - Aliases

extension AdminDatabase {
    package func addAlias(_ address: String, domain: String, username: String) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let domains = try execute("SELECT 1 FROM domains WHERE name = $1", [domain])
            if domains.count == 0 { throw .unknownDomain(domain) }
            let inserted = try execute(
                "INSERT INTO aliases (address, username) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING address",
                [address, username])
            if inserted.count == 0 {
                let existing = try execute("SELECT username FROM aliases WHERE address = $1", [address])
                let owner = existing.count > 0 ? (existing.rows[0][0] ?? "") : ""
                throw .aliasExists(address: address, username: owner)
            }
        }
    }

    package func deleteAlias(_ address: String) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let rows = try execute("DELETE FROM aliases WHERE address = $1 RETURNING address", [address])
            if rows.count == 0 { throw .notFound(kind: "alias", name: address) }
        }
    }

    package func setAliasEnabled(_ address: String, _ enabled: Bool) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let rows = try execute(
                "UPDATE aliases SET enabled = $2 WHERE address = $1 RETURNING address",
                [address, enabled ? "t" : "f"])
            if rows.count == 0 { throw .notFound(kind: "alias", name: address) }
        }
    }

    /// Lists aliases, optionally only those of `username` and/or in `domain`, ordered by address.
    package func listAliases(username: String?, domain: String?) throws(AdminError) -> [AliasRecord] {
        let rows = try execute("""
            SELECT address, username, domain, enabled,
                   \(Self.utc("created_at")) AS created_at, \(Self.utc("updated_at")) AS updated_at
            FROM aliases
            WHERE ($1::text IS NULL OR username = $1) AND ($2::text IS NULL OR domain = $2)
            ORDER BY address
            """, [username, domain])
        return try run { () throws(StoreError) in
            var records: [AliasRecord] = []
            for row in 0..<rows.count {
                records.append(AliasRecord(
                    address: try rows.string(row, "address"), username: try rows.string(row, "username"),
                    domain: try rows.string(row, "domain"), enabled: try rows.bool(row, "enabled"),
                    createdAt: try rows.string(row, "created_at"), updatedAt: try rows.string(row, "updated_at")))
            }
            return records
        }
    }
}

// MARK: - Apps

extension AdminDatabase {
    package func addApp(_ id: String, secretHash: String) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let rows = try execute(
                "INSERT INTO apps (id, secret_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING id",
                [id, secretHash])
            if rows.count == 0 { throw .alreadyExists(kind: "app", name: id) }
        }
    }

    package func setAppSecret(_ id: String, secretHash: String) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let rows = try execute("UPDATE apps SET secret_hash = $2 WHERE id = $1 RETURNING id", [id, secretHash])
            if rows.count == 0 { throw .notFound(kind: "app", name: id) }
        }
    }

    /// Deletes the app; its sender entries go with it (ON DELETE CASCADE).
    package func deleteApp(_ id: String) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let rows = try execute("DELETE FROM apps WHERE id = $1 RETURNING id", [id])
            if rows.count == 0 { throw .notFound(kind: "app", name: id) }
        }
    }

    package func setAppEnabled(_ id: String, _ enabled: Bool) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let rows = try execute(
                "UPDATE apps SET enabled = $2 WHERE id = $1 RETURNING id", [id, enabled ? "t" : "f"])
            if rows.count == 0 { throw .notFound(kind: "app", name: id) }
        }
    }

    /// Puts `address` on the app's sender list, or enables an entry that is there but disabled.
    package func allowSender(app id: String, address: String) throws(AdminError) -> AllowOutcome {
        try transaction { () throws(AdminError) in
            let apps = try execute("SELECT 1 FROM apps WHERE id = $1", [id])
            if apps.count == 0 { throw .notFound(kind: "app", name: id) }
            let existing = try execute(
                "SELECT enabled FROM app_senders WHERE app_id = $1 AND address = $2 FOR UPDATE", [id, address])
            if existing.count == 0 {
                try execute("INSERT INTO app_senders (app_id, address) VALUES ($1, $2)", [id, address])
                return .added
            }
            if existing.rows[0][0] == "t" { return .alreadyAllowed }
            try execute("UPDATE app_senders SET enabled = true WHERE app_id = $1 AND address = $2", [id, address])
            return .reenabled
        }
    }

    package func disallowSender(app id: String, address: String) throws(AdminError) {
        try transaction { () throws(AdminError) in
            let apps = try execute("SELECT 1 FROM apps WHERE id = $1", [id])
            if apps.count == 0 { throw .notFound(kind: "app", name: id) }
            let rows = try execute(
                "DELETE FROM app_senders WHERE app_id = $1 AND address = $2 RETURNING address", [id, address])
            if rows.count == 0 { throw .senderNotFound(app: id, address: address) }
        }
    }

    /// Lists apps ordered by id, each with its senders ordered by address.
    package func listApps() throws(AdminError) -> [AppRecord] {
        try transaction { () throws(AdminError) in
            let appRows = try execute("""
                SELECT id, enabled, \(Self.utc("created_at")) AS created_at, \(Self.utc("updated_at")) AS updated_at
                FROM apps ORDER BY id
                """)
            let senderRows = try execute("SELECT app_id, address, enabled FROM app_senders ORDER BY app_id, address")
            return try run { () throws(StoreError) in
                var senders: [String: [SenderRecord]] = [:]
                for row in 0..<senderRows.count {
                    let record = SenderRecord(
                        address: try senderRows.string(row, "address"), enabled: try senderRows.bool(row, "enabled"))
                    senders[try senderRows.string(row, "app_id"), default: []].append(record)
                }
                var records: [AppRecord] = []
                for row in 0..<appRows.count {
                    let id = try appRows.string(row, "id")
                    records.append(AppRecord(
                        id: id, enabled: try appRows.bool(row, "enabled"), senders: senders[id] ?? [],
                        createdAt: try appRows.string(row, "created_at"),
                        updatedAt: try appRows.string(row, "updated_at")))
                }
                return records
            }
        }
    }
}
