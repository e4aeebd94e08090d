// The `server` keys for connection limits, the shutdown drain, and the user
// and group to run as.

extension ConfigLoader {
    /// The keys of ``ServerLimitsConfig`` and ``ServerPrivilegesConfig`` in the `server` mapping.
    static let serverLimitKeys = [
        "max_connections", "max_connections_per_source", "drain_timeout", "user", "group", "allow_root",
    ]

    /// Reads the connection limits and the drain timeout from the `server` mapping.
    static func readServerLimits(_ section: ConfigMapping, into limits: inout ServerLimitsConfig) throws(ConfigError) {
        try section.readInt("max_connections", into: &limits.maxConnections, range: 1...1_000_000)
        try section.readInt("max_connections_per_source", into: &limits.maxConnectionsPerSource, range: 1...1_000_000)
        try section.readDuration("drain_timeout", into: &limits.drainTimeout, range: 0.1...3600)
    }

    /// Reads `server.user`, `server.group` and `server.allow_root`; a null user or group leaves
    /// the key unset.
    static func readServerPrivileges(
        _ section: ConfigMapping, into privileges: inout ServerPrivilegesConfig
    ) throws(ConfigError) {
        try section.readOptionalString("user", into: &privileges.user)
        try section.readOptionalString("group", into: &privileges.group)
        try section.readBool("allow_root", into: &privileges.allowRoot)
    }
}
