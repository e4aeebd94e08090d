// The daemon's whole configuration as plain values. Every default is defined
// here, once, beside its key; docs/configuration.md shows the same values.
// ConfigLoader fills these from YAML and rejects unknown keys by path.

/// A duration in seconds, written in YAML as `30s`, `5m`, `250ms`, `1h` or a bare number of seconds.
public typealias Seconds = Double

/// The daemon's configuration.
public struct Configuration: Sendable, Equatable {
    public var listeners: [ListenerConfig]
    public var server: ServerConfig
    public var policy: PolicyConfig
    public var database: DatabaseConfig
    public var identity: IdentityConfig
    public var log: LogConfig
    public var metrics = MetricsConfig()

    public init(
        listeners: [ListenerConfig] = [],
        server: ServerConfig = .init(),
        policy: PolicyConfig = .init(),
        database: DatabaseConfig = .init(),
        identity: IdentityConfig = .init(),
        log: LogConfig = .init()
    ) {
        self.listeners = listeners
        self.server = server
        self.policy = policy
        self.database = database
        self.identity = identity
        self.log = log
    }
}

/// A service that a listener can offer.
public enum ServiceKind: String, Sendable, Equatable, CaseIterable {
    case policy
    case socketmap
}

/// Where a listener accepts connections.
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// A TCP host (IPv4 or IPv6 literal, or a name resolved at start) and port.
    case tcp(host: String, port: UInt16)
    /// A UNIX stream socket path.
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}

/// Ownership and mode of a UNIX socket, applied after bind.
public struct UnixSocketPermissions: Sendable, Equatable {
    public var owner: String?
    public var group: String?
    public var mode: UInt16

    public init(owner: String? = nil, group: String? = nil, mode: UInt16 = 0o660) {
        self.owner = owner
        self.group = group
        self.mode = mode
    }
}

/// One listening socket.
public struct ListenerConfig: Sendable, Equatable {
    public var name: String
    public var address: ListenAddress
    /// Services offered; a connection's first byte picks policy (a letter) or socketmap (a digit).
    public var services: Set<ServiceKind>
    public var unixPermissions: UnixSocketPermissions
    /// Mutual TLS; nil for a plain listener.
    public var tls: ListenerTLSConfig?
    /// Access rules; nil on a plain listener means every client gets every service it offers.
    public var acl: [ACLRule]?
    /// Load balancers whose connections start with a PROXY protocol v2 header; empty turns it off.
    public var proxyProtocolFrom: [IPNetwork] = []

    public init(
        name: String, address: ListenAddress,
        services: Set<ServiceKind> = Set(ServiceKind.allCases),
        unixPermissions: UnixSocketPermissions = .init()
    ) {
        self.name = name
        self.address = address
        self.services = services
        self.unixPermissions = unixPermissions
    }
}

/// Threads, pools and per-connection limits of the server loop.
public struct ServerConfig: Sendable, Equatable {
    /// Reactor threads; 0 means one per online core.
    public var reactorThreads: Int = 0
    /// Threads that run blocking identity-provider lookups.
    public var workerThreads: Int = 16
    /// Lookups that may wait for a worker; past this a request gets a temporary failure.
    public var workerQueueLimit: Int = 4096
    /// Longest policy attribute line, in bytes, newline excluded.
    public var policyMaxLineLength: Int = 4096
    /// Most attributes in one policy request.
    public var policyMaxAttributes: Int = 100
    /// Largest policy request, in bytes.
    public var policyMaxRequestSize: Int = 65536
    /// Largest socketmap request payload, in bytes (Postfix 3.12 sends at most 10000).
    public var socketmapMaxRequestSize: Int = 10000
    /// Connections idle longer than this are closed. Above Postfix's 300 s policy max_idle.
    public var idleTimeout: Seconds = 330
    /// A request must arrive whole within this time once its first byte is read,
    /// and a reply must be written within it.
    public var ioTimeout: Seconds = 30
    /// Connection limits and the shutdown drain (Configuration+Limits.swift).
    public var limits = ServerLimitsConfig()
    /// The user and group to run as after binding (Configuration+Limits.swift).
    public var privileges = ServerPrivilegesConfig()

    public init() {}
}

/// What the policy service decides and how.
public struct PolicyConfig: Sendable, Equatable {
    /// What happens when the identity provider cannot answer.
    public enum FailureMode: String, Sendable, Equatable {
        /// Defer the mail with `451 4.3.0 Temporary authentication/lookup failure`.
        case tempfail
        /// Let Postfix's later restrictions decide (`DUNNO`).
        case dunno
    }

    public var failureMode: FailureMode = .tempfail
    /// Characters that start an address extension (`user+tag@`), as Postfix's
    /// `recipient_delimiter`; empty turns extension handling off.
    public var recipientDelimiter: String = "+"
    /// Whether an authenticated client may use the null sender.
    public var allowAuthenticatedNullSender: Bool = false
    /// SASL mechanisms, lower case, whose users are identity-provider users.
    public var oauthMechanisms: Set<String> = ["xoauth2", "oauthbearer"]
    /// SASL mechanisms, lower case, whose users are applications from the database.
    public var appMechanisms: Set<String> = ["plain", "login"]

    public init() {}
}

/// The PostgreSQL store and its snapshot. The daemon holds one connection, which both
/// listens for notifications and loads snapshots.
public struct DatabaseConfig: Sendable, Equatable {
    /// A libpq connection string or URI.
    public var url: String = "postgresql:///mailcloak"
    /// Interval of the full resync that backs up LISTEN/NOTIFY.
    public var resyncInterval: Seconds = 300
    /// Longest wait for a connection to PostgreSQL.
    public var connectTimeout: Seconds = 5
    /// Longest time one statement may run; PostgreSQL cancels it after that.
    public var statementTimeout: Seconds = 10
    /// Upper bound of the reconnect backoff after PostgreSQL goes away.
    public var maxReconnectDelay: Seconds = 30
    /// Snapshots older than this make readiness fail.
    public var maxSnapshotAge: Seconds = 900

    public init() {}
}

/// Which identity provider answers user questions, and how lookups are cached.
public struct IdentityConfig: Sendable, Equatable {
    public enum Provider: String, Sendable, Equatable {
        case keycloak
        case authentik
    }

    public var provider: Provider = .keycloak
    public var keycloak: KeycloakConfig = .init()
    public var authentik: AuthentikConfig = .init()
    public var cache: IdentityCacheConfig = .init()
    /// The shared cache; used only when `redis.host` is set.
    public var redis: RedisConfig = .init()
    public var breaker: CircuitBreakerConfig = .init()

    public init() {}
}

/// The Keycloak admin REST API and the service account that reads it.
public struct KeycloakConfig: Sendable, Equatable {
    /// Base URL of Keycloak, without `/realms` or `/admin` (for example `https://sso.example.com`).
    public var baseURL: String = "http://127.0.0.1:8080"
    public var realm: String = "mail"
    public var clientID: String = "mailcloak"
    /// The client secret; `clientSecretFile` takes precedence when set.
    public var clientSecret: String = ""
    public var clientSecretFile: String?
    /// Whole-request timeout of one HTTP call.
    public var requestTimeout: Seconds = 5
    public var connectTimeout: Seconds = 2
    /// A token is renewed this long before `expires_in` ends.
    public var tokenRefreshSkew: Seconds = 30
    /// Whether a user whose email is not verified counts as having that address.
    public var requireEmailVerified: Bool = false
    /// Path of a CA bundle for HTTPS; nil uses the system store.
    public var caFile: String?

    public init() {}
}

/// The in-process cache of identity lookups.
public struct IdentityCacheConfig: Sendable, Equatable {
    public var maxEntries: Int = 100_000
    public var positiveTTL: Seconds = 300
    public var negativeTTL: Seconds = 60
    /// Each TTL is varied by up to this fraction, so entries written together expire apart.
    public var ttlJitter: Double = 0.1
    /// How long past its TTL an answer is kept to serve while the provider is down; 0 keeps none.
    public var maxStaleness: Seconds = 3600

    public init() {}
}

/// Log verbosity, line format and output.
public struct LogConfig: Sendable, Equatable {
    /// Lowest level logged, a `LogLevel` name in lower case (the loader stores the canonical name).
    public var level: String = "info"
    /// A `LogFormat` raw value: `keyvalue` or `json`.
    public var format: String = "keyvalue"
    /// Destination of log lines: stderr, or datagrams to the syslog socket.
    public var output: LogOutput = .stderr
    /// Path of the syslog daemon's UNIX datagram socket.
    public var syslogSocket: String = "/dev/log"
    /// A `SyslogFacility` raw value such as `mail`, `daemon` or `local0`.
    public var syslogFacility: String = "mail"
    /// The tag in front of each syslog message, before `[pid]`.
    public var syslogIdent: String = "mailcloak"
    /// Share of per-request decision lines logged at info, from 0 to 1. All of them are logged at debug.
    public var decisionSampleRate: Double = 0

    public init() {}
}

/// Destination of log lines.
public enum LogOutput: String, Sendable, CaseIterable {
    case stderr
    case syslog
}
