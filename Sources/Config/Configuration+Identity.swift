// The identity sections added for fleet-scale lookups: the shared Redis
// cache, the circuit breaker around the provider, and the Authentik
// provider. Defaults are defined here, next to the key names, and
// docs/configuration.md shows the same values.

/// The shared Redis cache of identity answers (the second cache level).
/// Without a host or sentinels, the in-process cache serves alone.
public struct RedisConfig: Sendable, Equatable {
    /// Host name or IP address of the Redis server; nil turns the shared cache off.
    public var host: String?
    public var port: Int = 6379
    /// Sentinels as `host:port`; when set, they name the primary and `host` and `port` are not used.
    public var sentinels: [String] = []
    /// Name of the monitored primary that the sentinels are asked for.
    public var sentinelMaster: String = "mymaster"
    /// Password sent with AUTH; `passwordFile` takes precedence when set.
    public var password: String?
    public var passwordFile: String?
    /// Database number sent with SELECT.
    public var database: Int = 0
    /// Every key and the flush channel start with this text.
    public var keyPrefix: String = "mailcloak"
    /// Connections each instance opens at most.
    public var poolSize: Int = 8
    public var connectTimeout: Seconds = 0.5
    /// Read and write timeout of one command.
    public var commandTimeout: Seconds = 0.25
    /// Upper bound of the reconnect backoff while Redis is down.
    public var maxReconnectDelay: Seconds = 5
    /// Expiry of the lock that lets one instance fetch a key for all.
    public var lockTTL: Seconds = 10
    /// How long an instance polls for another instance's answer before it asks the provider itself.
    public var lockWait: Seconds = 2

    public init() {}

    /// Whether a shared cache is configured.
    public var isEnabled: Bool { host != nil || !sentinels.isEmpty }
}

/// The circuit breaker around the identity provider.
public struct CircuitBreakerConfig: Sendable, Equatable {
    /// Consecutive failed lookups that open the breaker.
    public var failureThreshold: Int = 5
    /// Time the breaker stays open the first time; it doubles on each failed probe.
    public var initialBackoff: Seconds = 1
    public var maxBackoff: Seconds = 60

    public init() {}
}

/// The Authentik core API and the token that reads it.
public struct AuthentikConfig: Sendable, Equatable {
    /// Base URL of Authentik, without `/api` (for example `https://auth.example.com`).
    public var baseURL: String = "http://127.0.0.1:9000"
    /// An API token of a user allowed to view users; `tokenFile` takes precedence when set.
    public var token: String = ""
    public var tokenFile: String?
    public var requestTimeout: Seconds = 5
    public var connectTimeout: Seconds = 2
    /// Users per page of a user query.
    public var pageSize: Int = 20
    /// Path of a CA bundle for HTTPS; nil uses the system store.
    public var caFile: String?

    public init() {}
}
