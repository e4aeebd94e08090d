// The metrics section: where the HTTP endpoint for /metrics, /healthz and
// /readyz listens. Defaults are defined here, next to the key names, and
// docs/configuration.md shows the same values.

/// The HTTP endpoint that publishes metrics and health.
public struct MetricsConfig: Sendable, Equatable {
    /// Whether the endpoint runs; false starts no listener.
    public var enabled: Bool = true
    /// A numeric IPv4 or IPv6 address (an IPv6 address without brackets).
    public var host: String = "127.0.0.1"
    /// The TCP port; 0 picks a free port at start.
    public var port: UInt16 = 9464

    public init() {}

    /// The address as `metrics.listen` writes it: `host:port`, or `[host]:port` for IPv6.
    public var listen: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
