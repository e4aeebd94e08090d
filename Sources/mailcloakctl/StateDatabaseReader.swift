// Reads a first-generation mailcloak state.db: domains (a domain, domain_name
// or name column, optional enabled), aliases(alias_email, username or
// target_user, enabled, updated_at), apps(app_id, secret_hash, enabled,
// created_at) and app_from(app_id, from_addr, enabled). Values are folded
// to lower case; rows that fold to the same key are merged when they agree
// and rejected when they differ. Any invalid row fails the whole read.
import Store

struct StateDatabaseReader {
    let reader: SQLiteReader

    /// Reads every table. - Parameter notes: receives remarks for the operator.
    func read(notes: inout [String]) throws(CLIError) -> ImportData {
        let tables = try ["domains", "aliases", "apps", "app_from"].map { (name: String) throws(CLIError) in
            (name, try reader.columns(of: name))
        }
        let present = Dictionary(uniqueKeysWithValues: tables)
        if present.values.allSatisfy(\.isEmpty) {
            throw .runtime("\(reader.path) has none of the tables domains, aliases, apps, app_from; "
                + "is it a mailcloak state.db?")
        }

        var data = ImportData()
        data.aliases = try readAliases(present["aliases"]!)
        data.apps = try readApps(present["apps"]!)
        data.senders = try readSenders(present["app_from"]!)
        if present["domains"]!.isEmpty {
            data.domains = derivedDomains(data)
            notes.append("no domains table in \(reader.path): created \(data.domains.count) "
                + "\(data.domains.count == 1 ? "domain" : "domains") from alias addresses")
        } else {
            data.domains = try readDomains(present["domains"]!)
        }
        for table in ["aliases", "apps", "app_from"] where present[table]!.isEmpty {
            notes.append("no \(table) table in \(reader.path)")
        }
        return data
    }

    // MARK: - Tables

    private func readDomains(_ columns: [String]) throws(CLIError) -> [ImportData.Domain] {
        guard let nameColumn = ["domain", "domain_name", "name"].first(where: columns.contains) else {
            throw .runtime("table domains in \(reader.path) has no domain, domain_name or name column")
        }
        let rows = try select(table: "domains", [nameColumn, optional("enabled", columns)])
        var merged = MergedRows<ImportData.Domain>(table: "domains")
        for row in rows {
            let raw = row[0].text ?? ""
            guard let name = Validation.domain(raw).value else {
                throw rowError("domains", nameColumn, raw, Validation.domain(raw).reason)
            }
            let enabled = try flag(row[1], table: "domains", key: raw)
            try merged.add(key: name, ImportData.Domain(name: name, enabled: enabled), raw: raw)
        }
        return merged.values
    }

    private func readAliases(_ columns: [String]) throws(CLIError) -> [ImportData.Alias] {
        guard !columns.isEmpty else { return [] }
        guard columns.contains("alias_email"),
            let userColumn = ["username", "target_user"].first(where: columns.contains)
        else {
            throw .runtime("table aliases in \(reader.path) needs the columns alias_email and username")
        }
        let rows = try select(
            table: "aliases",
            ["alias_email", userColumn, optional("enabled", columns), optional("updated_at", columns)])
        var merged = MergedRows<ImportData.Alias>(table: "aliases")
        for row in rows {
            let raw = row[0].text ?? ""
            let (address, reason) = Validation.address(raw.trimmingSpaces())
            guard let address else { throw rowError("aliases", "alias_email", raw, reason) }
            let rawUser = (row[1].text ?? "").trimmingSpaces()
            let (username, userReason) = Validation.username(rawUser)
            guard let username else { throw rowError("aliases", userColumn, rawUser, userReason) }
            let alias = ImportData.Alias(
                address: address.description, username: username,
                enabled: try flag(row[2], table: "aliases", key: raw), updatedAt: epochSeconds(row[3]))
            try merged.add(key: alias.address, alias, raw: raw) { $0.address == $1.address && $0.username == $1.username }
        }
        return merged.values
    }

    private func readApps(_ columns: [String]) throws(CLIError) -> [ImportData.App] {
        guard !columns.isEmpty else { return [] }
        guard columns.contains("app_id"), columns.contains("secret_hash") else {
            throw .runtime("table apps in \(reader.path) needs the columns app_id and secret_hash")
        }
        let rows = try select(
            table: "apps", ["app_id", "secret_hash", optional("enabled", columns), optional("created_at", columns)])
        var merged = MergedRows<ImportData.App>(table: "apps")
        for row in rows {
            let raw = row[0].text ?? ""
            let (id, reason) = Validation.appID(raw.trimmingSpaces())
            guard let id else { throw rowError("apps", "app_id", raw, reason) }
            guard let hash = row[1].text, !hash.trimmingSpaces().isEmpty else {
                throw rowError("apps", "app_id", raw, "secret_hash is empty")
            }
            let app = ImportData.App(
                id: id, secretHash: hash, enabled: try flag(row[2], table: "apps", key: raw),
                createdAt: epochSeconds(row[3]))
            try merged.add(key: id, app, raw: raw) { $0.id == $1.id && $0.secretHash == $1.secretHash }
        }
        return merged.values
    }

    private func readSenders(_ columns: [String]) throws(CLIError) -> [ImportData.Sender] {
        guard !columns.isEmpty else { return [] }
        guard columns.contains("app_id"), columns.contains("from_addr") else {
            throw .runtime("table app_from in \(reader.path) needs the columns app_id and from_addr")
        }
        let rows = try select(table: "app_from", ["app_id", "from_addr", optional("enabled", columns)])
        var merged = MergedRows<ImportData.Sender>(table: "app_from")
        for row in rows {
            let rawID = row[0].text ?? ""
            let (id, reason) = Validation.appID(rawID.trimmingSpaces())
            guard let id else { throw rowError("app_from", "app_id", rawID, reason) }
            let raw = row[1].text ?? ""
            let (address, addressReason) = Validation.address(raw.trimmingSpaces())
            guard let address else { throw rowError("app_from", "from_addr", raw, addressReason) }
            let sender = ImportData.Sender(
                appID: id, address: address.description, enabled: try flag(row[2], table: "app_from", key: raw))
            try merged.add(key: "\(id) \(address)", sender, raw: "\(rawID) \(raw)")
        }
        return merged.values
    }

    /// Domains of every alias, enabled, in sorted order. Sender domains are left out: an app
    /// may send as an address of a domain that is not local, and a local domain would make
    /// this cluster claim that domain's mail.
    private func derivedDomains(_ data: ImportData) -> [ImportData.Domain] {
        var names = Set<String>()
        for alias in data.aliases { names.insert(String(alias.address.split(separator: "@").last!)) }
        return names.sorted().map { ImportData.Domain(name: $0, enabled: true) }
    }

    // MARK: - Values

    /// Returns the column name, or NULL when the table does not have it.
    private func optional(_ column: String, _ columns: [String]) -> String {
        columns.contains(column) ? column : "NULL"
    }

    private func select(table: String, _ columns: [String]) throws(CLIError) -> [[SQLiteValue]] {
        let list = columns.map { $0 == "NULL" ? $0 : quoteIdentifier($0) }.joined(separator: ", ")
        return try reader.query("SELECT \(list) FROM \(quoteIdentifier(table))")
    }

    /// Reads an enabled column (0/1, true/false, yes/no). NULL or a missing column means enabled.
    private func flag(_ value: SQLiteValue, table: String, key: String) throws(CLIError) -> Bool {
        switch value {
        case .null: return true
        case .integer(let number): return number != 0
        case .real(let number): return number != 0
        case .text(let text):
            switch text.trimmingSpaces().lowercased() {
            case "1", "t", "true", "yes", "on": return true
            case "0", "f", "false", "no", "off": return false
            default: throw rowError(table, "enabled", text, "expected 0 or 1 (row \(key))")
            }
        case .blob: throw rowError(table, "enabled", "<blob>", "expected 0 or 1 (row \(key))")
        }
    }

    /// Reads a Unix timestamp column. Anything else (NULL, text dates) keeps the import time.
    private func epochSeconds(_ value: SQLiteValue) -> Int64? {
        let maxSeconds: Int64 = 253_402_300_799  // 9999-12-31T23:59:59Z
        switch value {
        case .integer(let number) where (0...maxSeconds).contains(number): return number
        case .text(let text): return Int64(text).flatMap { (0...maxSeconds).contains($0) ? $0 : nil }
        default: return nil
        }
    }

    private func rowError(_ table: String, _ column: String, _ value: String, _ reason: String) -> CLIError {
        .runtime("invalid row in table \(table) of \(reader.path): \(column) \"\(value)\": \(reason); "
            + "nothing was written")
    }
}

/// Rows keyed by their canonical key, in first-seen order. Equal duplicates merge.
private struct MergedRows<Row: Equatable> {
    let table: String
    private(set) var values: [Row] = []
    private var index: [String: (position: Int, raw: String)] = [:]

    init(table: String) {
        self.table = table
    }

    /// Adds `row`. A second row with the same key must agree according to `same` (default ==).
    mutating func add(
        key: String, _ row: Row, raw: String, same: (Row, Row) -> Bool = { $0 == $1 }
    ) throws(CLIError) {
        guard let existing = index[key] else {
            index[key] = (values.count, raw)
            values.append(row)
            return
        }
        guard same(values[existing.position], row) else {
            throw .runtime("conflicting rows in table \(table): \"\(existing.raw)\" and \"\(raw)\" "
                + "are both \(key) but differ; fix one of them, nothing was written")
        }
    }
}

extension String {
    func trimmingSpaces() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[first...last])
    }
}
