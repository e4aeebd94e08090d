// The server keys that protect the daemon under load, at shutdown and from
// its own bugs: the connection limits, the drain timeout, and the user and
// group to run as after the listeners are bound. Defaults are defined here, next
// to the key names, and docs/configuration.md shows the same values.

/// Connection limits and the shutdown drain of the server loop.
public struct ServerLimitsConfig: Sendable, Equatable {
    /// Maximum open connections across all listeners. A new connection past it is closed at once.
    public var maxConnections: Int = 10000
    /// Maximum open connections from one IP address. UNIX socket peers are exempt.
    public var maxConnectionsPerSource: Int = 1000
    /// Time that SIGTERM or SIGINT waits for requests in progress before the daemon exits.
    public var drainTimeout: Seconds = 10

    public init() {}
}

/// The user and group that the daemon switches to once its listeners are bound.
public struct ServerPrivilegesConfig: Sendable, Equatable {
    /// User name to run as; nil keeps the starting user.
    public var user: String?
    /// Group name to run as; nil means the user's primary group, or the starting group without a user.
    public var group: String?
    /// Whether the daemon may serve as root when `user` is unset; without it such a start fails.
    public var allowRoot = false

    public init() {}
}
