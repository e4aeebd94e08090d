// The server keys that protect the daemon under load and at shutdown: the
// connection limits and the drain timeout. Defaults are defined here, next
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
