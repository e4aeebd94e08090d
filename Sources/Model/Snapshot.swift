// The in-memory copy of the PostgreSQL tables that requests are answered
// from. A snapshot is immutable; the store builds a new one and swaps it in.

/// A mail domain that this platform serves.
public struct DomainEntry: Sendable, Equatable, Hashable {
    public var name: String
    public var enabled: Bool

    public init(name: String, enabled: Bool) {
        self.name = canonicalDomain(name)
        self.enabled = enabled
    }
}

/// An alias address that delivers to an identity-provider user.
public struct AliasEntry: Sendable, Equatable, Hashable {
    /// The alias, canonical form.
    public var address: MailAddress
    /// The identity-provider username that owns the alias and receives its mail.
    public var username: String
    public var enabled: Bool

    public init(address: MailAddress, username: String, enabled: Bool) {
        self.address = address
        self.username = username
        self.enabled = enabled
    }
}

/// An application that authenticates with SASL PLAIN or LOGIN and may send
/// from the addresses on its allow-list.
public struct AppEntry: Sendable, Equatable, Hashable {
    /// The SASL username, folded to lower case.
    public var id: String
    public var enabled: Bool
    /// Sender addresses the app may use, canonical form, enabled entries only.
    public var senders: Set<MailAddress>

    public init(id: String, enabled: Bool, senders: Set<MailAddress>) {
        self.id = id.lowercased()
        self.enabled = enabled
        self.senders = senders
    }
}

/// One consistent view of domains, aliases and apps.
public struct Snapshot: Sendable {
    public let domains: [String: DomainEntry]
    public let aliases: [MailAddress: AliasEntry]
    public let apps: [String: AppEntry]
    /// Seconds since the Unix epoch when this snapshot was read.
    public let loadedAt: Double

    public init(domains: [DomainEntry], aliases: [AliasEntry], apps: [AppEntry], loadedAt: Double) {
        self.domains = Dictionary(domains.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
        self.aliases = Dictionary(aliases.map { ($0.address, $0) }, uniquingKeysWith: { _, last in last })
        self.apps = Dictionary(apps.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
        self.loadedAt = loadedAt
    }

    /// Reports whether `domain` (any case) is an enabled local domain.
    public func isLocalDomain(_ domain: String) -> Bool {
        domains[canonicalDomain(domain)]?.enabled == true
    }

    /// Returns the enabled alias for `address`, or nil.
    public func enabledAlias(_ address: MailAddress) -> AliasEntry? {
        guard let alias = aliases[address], alias.enabled else { return nil }
        return alias
    }
}

/// Something that holds the current snapshot, such as the PostgreSQL store.
public protocol SnapshotProvider: AnyObject, Sendable {
    /// The newest snapshot, or nil before the first one loaded. Cheap; called per request.
    var current: Snapshot? { get }
}
