// Errors of the admin operations that mailcloakctl runs. Each description
// is the message an operator reads after "mailcloakctl: ".

/// A rejected admin operation, or a database failure underneath it.
package enum AdminError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A row with this key exists already (`kind` is domain, app).
    case alreadyExists(kind: String, name: String)
    /// The alias exists already, pointing at `username`.
    case aliasExists(address: String, username: String)
    /// No row with this key (`kind` is domain, alias, app).
    case notFound(kind: String, name: String)
    /// The alias's domain is not a row of domains.
    case unknownDomain(String)
    /// The domain still has aliases, so deleting it would orphan them.
    case domainInUse(domain: String, aliases: Int)
    /// The address is not on the app's sender list.
    case senderNotFound(app: String, address: String)
    /// The database rejected an import row, so the transaction was rolled back.
    case importRowRejected(table: String, key: String, reason: String)
    /// The database schema is older than this build (run `mailcloakctl migrate`).
    case schemaBehind(found: Int, expected: Int)
    /// The connection or a statement failed.
    case store(StoreError)

    package var description: String {
        switch self {
        case .alreadyExists(let kind, let name):
            "\(kind) \(name) already exists"
        case .aliasExists(let address, let username):
            "alias \(address) already exists (username \(username))"
        case .notFound(let kind, let name):
            "\(kind) \(name) not found"
        case .unknownDomain(let domain):
            "domain \(domain) is not a local domain; add it first with: mailcloakctl domains add \(domain)"
        case .domainInUse(let domain, let aliases):
            aliases == 1
                ? "domain \(domain) still has 1 alias; delete it first"
                : "domain \(domain) still has \(aliases) aliases; delete them first"
        case .senderNotFound(let app, let address):
            "sender \(address) is not allowed for app \(app)"
        case .importRowRejected(let table, let key, let reason):
            "import rejected \(table) row \(key): \(reason); nothing was written"
        case .schemaBehind(let found, let expected):
            "database schema is at version \(found) but this mailcloakctl needs version \(expected); "
                + "run: mailcloakctl migrate"
        case .store(let error):
            error.description
        }
    }
}
