// The `server` keys for connection limits and the shutdown drain.

extension ConfigLoader {
    /// The keys of ``ServerLimitsConfig`` in the `server` mapping.
    static let serverLimitKeys = ["max_connections", "max_connections_per_source", "drain_timeout"]

    /// Reads the connection limits and the drain timeout from the `server` mapping.
    static func readServerLimits(_ section: ConfigMapping, into limits: inout ServerLimitsConfig) throws(ConfigError) {
        try section.readInt("max_connections", into: &limits.maxConnections, range: 1...1_000_000)
        try section.readInt("max_connections_per_source", into: &limits.maxConnectionsPerSource, range: 1...1_000_000)
        try section.readDuration("drain_timeout", into: &limits.drainTimeout, range: 0.1...3600)
    }
}
