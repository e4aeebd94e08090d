// Writes rows imported from a first-generation SQLite state.db in one
// transaction. Rows whose key already exists in PostgreSQL are left as they
// are and counted. A row that the database rejects (an alias outside every
// domain, a sender of an unknown app) aborts the whole import.
// NOTE: Rows are inserted one statement each, about 0.1 ms per row on
// loopback, so an import of 100,000 aliases takes several seconds.

/// Rows read from a state.db, already validated and folded to lower case.
package struct ImportData: Sendable, Equatable {
    package struct Domain: Sendable, Equatable {
        package var name: String
        package var enabled: Bool
        package init(name: String, enabled: Bool) {
            self.name = name
            self.enabled = enabled
        }
    }

    package struct Alias: Sendable, Equatable {
        package var address: String
        package var username: String
        package var enabled: Bool
        /// Seconds since the Unix epoch; nil keeps the import time.
        package var updatedAt: Int64?
        package init(address: String, username: String, enabled: Bool, updatedAt: Int64?) {
            self.address = address
            self.username = username
            self.enabled = enabled
            self.updatedAt = updatedAt
        }
    }

    package struct App: Sendable, Equatable {
        package var id: String
        /// Stored unchanged, whatever scheme the first generation wrote.
        package var secretHash: String
        package var enabled: Bool
        /// Seconds since the Unix epoch; nil keeps the import time.
        package var createdAt: Int64?
        package init(id: String, secretHash: String, enabled: Bool, createdAt: Int64?) {
            self.id = id
            self.secretHash = secretHash
            self.enabled = enabled
            self.createdAt = createdAt
        }
    }

    package struct Sender: Sendable, Equatable {
        package var appID: String
        package var address: String
        package var enabled: Bool
        package init(appID: String, address: String, enabled: Bool) {
            self.appID = appID
            self.address = address
            self.enabled = enabled
        }
    }

    package var domains: [Domain] = []
    package var aliases: [Alias] = []
    package var apps: [App] = []
    package var senders: [Sender] = []

    package init() {}
}

/// Rows added and rows left unchanged because their key existed, for one table.
package struct ImportTableCount: Sendable, Equatable {
    package var added = 0
    package var alreadyPresent = 0
}

/// Per-table results of an import.
package struct ImportCounts: Sendable, Equatable {
    package var domains = ImportTableCount()
    package var aliases = ImportTableCount()
    package var apps = ImportTableCount()
    package var senders = ImportTableCount()
}

extension AdminDatabase {
    /// Inserts `data` in one transaction; with `dryRun` the transaction is rolled back.
    /// - Throws: `AdminError.importRowRejected` naming the first rejected row.
    package func importRows(_ data: ImportData, dryRun: Bool) throws(AdminError) -> ImportCounts {
        try execute("BEGIN")
        do {
            let counts = try insertAll(data)
            try execute(dryRun ? "ROLLBACK" : "COMMIT")
            return counts
        } catch {
            // The first error is the one raised. A failed ROLLBACK needs no report, because the server
            // aborts the transaction when the connection closes.
            if connection.isOpen { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
    }

    private func insertAll(_ data: ImportData) throws(AdminError) -> ImportCounts {
        var counts = ImportCounts()
        for domain in data.domains {
            let added = try insertRow(table: "domains", key: domain.name, sql: """
                INSERT INTO domains (name, enabled) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1
                """, [domain.name, domain.enabled ? "t" : "f"])
            count(added, into: &counts.domains)
        }
        for alias in data.aliases {
            let added = try insertRow(table: "aliases", key: alias.address, sql: """
                INSERT INTO aliases (address, username, enabled, created_at, updated_at)
                VALUES ($1, $2, $3, coalesce(to_timestamp($4::bigint), now()), coalesce(to_timestamp($4::bigint), now()))
                ON CONFLICT DO NOTHING RETURNING 1
                """, [alias.address, alias.username, alias.enabled ? "t" : "f", alias.updatedAt.map(String.init)])
            count(added, into: &counts.aliases)
        }
        for app in data.apps {
            let added = try insertRow(table: "apps", key: app.id, sql: """
                INSERT INTO apps (id, secret_hash, enabled, created_at, updated_at)
                VALUES ($1, $2, $3, coalesce(to_timestamp($4::bigint), now()), now())
                ON CONFLICT DO NOTHING RETURNING 1
                """, [app.id, app.secretHash, app.enabled ? "t" : "f", app.createdAt.map(String.init)])
            count(added, into: &counts.apps)
        }
        for sender in data.senders {
            let added = try insertRow(table: "app_from", key: "\(sender.appID) \(sender.address)", sql: """
                INSERT INTO app_senders (app_id, address, enabled) VALUES ($1, $2, $3)
                ON CONFLICT DO NOTHING RETURNING 1
                """, [sender.appID, sender.address, sender.enabled ? "t" : "f"])
            count(added, into: &counts.senders)
        }
        return counts
    }

    private func count(_ added: Bool, into tableCount: inout ImportTableCount) {
        if added {
            tableCount.added += 1
        } else {
            tableCount.alreadyPresent += 1
        }
    }

    /// Inserts one row; returns false when its key existed already.
    private func insertRow(table: String, key: String, sql: String, _ parameters: [String?]) throws(AdminError) -> Bool {
        do {
            return try connection.execute(sql, parameters).count == 1
        } catch {
            switch error.sqlState {
            case "23503":
                let reason = table == "aliases"
                    ? "its domain is not a local domain (add it to the domains table or with mailcloakctl domains add)"
                    : "app \(parameters[0] ?? "") does not exist in the apps table"
                throw .importRowRejected(table: table, key: key, reason: reason)
            case .some(let state) where state.hasPrefix("22") || state.hasPrefix("23"):
                throw .importRowRejected(table: table, key: key, reason: error.description)
            default:
                throw .store(error)
            }
        }
    }
}
