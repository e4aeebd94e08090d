// The changes a SIGHUP reload finds: the key paths that differ between the
// running configuration and the file read again, split into those the daemon
// applies at run time and those that wait for a restart. The daemon logs both.

/// The key paths that differ between two configurations.
public struct ConfigurationChanges: Sendable, Equatable {
    /// Changed keys that a reload applies: logging, TLS material, access rules,
    /// PROXY protocol sources and the identity cache settings.
    public var applied: [String] = []
    /// Changed keys that keep their running value until the next restart.
    public var needRestart: [String] = []

    public var isEmpty: Bool { applied.isEmpty && needRestart.isEmpty }

    /// Compares `running` with `loaded`, key by key for the reloadable sections and
    /// the `server` section, and section by section elsewhere.
    public init(running: Configuration, loaded: Configuration) {
        compareListeners(running.listeners, loaded.listeners)
        for (key, changed) in Self.serverKeyChanges(running.server, loaded.server) where changed {
            needRestart.append("server." + key)
        }
        restartIfChanged("policy", running.policy, loaded.policy)
        restartIfChanged("database", running.database, loaded.database)
        restartIfChanged("identity.provider", running.identity.provider, loaded.identity.provider)
        restartIfChanged("identity.keycloak", running.identity.keycloak, loaded.identity.keycloak)
        restartIfChanged("identity.authentik", running.identity.authentik, loaded.identity.authentik)
        restartIfChanged("identity.redis", running.identity.redis, loaded.identity.redis)
        restartIfChanged("identity.breaker", running.identity.breaker, loaded.identity.breaker)
        let cache = (running.identity.cache, loaded.identity.cache)
        applyIfChanged("identity.cache.max_entries", cache.0.maxEntries, cache.1.maxEntries)
        applyIfChanged("identity.cache.positive_ttl", cache.0.positiveTTL, cache.1.positiveTTL)
        applyIfChanged("identity.cache.negative_ttl", cache.0.negativeTTL, cache.1.negativeTTL)
        applyIfChanged("identity.cache.ttl_jitter", cache.0.ttlJitter, cache.1.ttlJitter)
        applyIfChanged("identity.cache.max_staleness", cache.0.maxStaleness, cache.1.maxStaleness)
        applyIfChanged("log", running.log, loaded.log)
        restartIfChanged("metrics", running.metrics, loaded.metrics)
    }

    /// Returns `running` with the parts of `loaded` that a reload applies, which is
    /// what the daemon runs after a reload.
    public static func applying(_ loaded: Configuration, to running: Configuration) -> Configuration {
        var result = running
        result.log = loaded.log
        result.identity.cache = loaded.identity.cache
        for index in result.listeners.indices {
            guard let new = loaded.listeners.first(where: { $0.name == result.listeners[index].name }),
                Self.hasSecurity(result.listeners[index]),
                (new.tls == nil) == (result.listeners[index].tls == nil)
            else { continue }
            result.listeners[index].tls = new.tls
            result.listeners[index].acl = new.acl
            result.listeners[index].proxyProtocolFrom = new.proxyProtocolFrom
        }
        return result
    }

    /// Reports whether the listener was bound with TLS, access rules or PROXY sources, the
    /// parts that a reload can replace. A plain listener gains none without a restart.
    static func hasSecurity(_ listener: ListenerConfig) -> Bool {
        listener.tls != nil || listener.acl != nil || !listener.proxyProtocolFrom.isEmpty
    }

    private mutating func compareListeners(_ running: [ListenerConfig], _ loaded: [ListenerConfig]) {
        for old in running {
            let path = "listeners[\(old.name)]"
            guard let new = loaded.first(where: { $0.name == old.name }) else {
                needRestart.append(path)
                continue
            }
            restartIfChanged(path + ".address", old.address, new.address)
            restartIfChanged(path + ".services", old.services, new.services)
            restartIfChanged(path + ".owner/group/mode", old.unixPermissions, new.unixPermissions)
            let reloadable = Self.hasSecurity(old) && (old.tls == nil) == (new.tls == nil)
            for (key, changed) in [
                ("tls", old.tls != new.tls), ("acl", old.acl != new.acl),
                ("proxy_protocol_from", old.proxyProtocolFrom != new.proxyProtocolFrom),
            ] where changed {
                if reloadable { applied.append(path + "." + key) } else { needRestart.append(path + "." + key) }
            }
        }
        for new in loaded where !running.contains(where: { $0.name == new.name }) {
            needRestart.append("listeners[\(new.name)]")
        }
    }

    /// Pairs each `server` key with whether it differs; a test checks that every key is listed.
    static func serverKeyChanges(_ old: ServerConfig, _ new: ServerConfig) -> [(String, Bool)] {
        [
            ("reactor_threads", old.reactorThreads != new.reactorThreads),
            ("worker_threads", old.workerThreads != new.workerThreads),
            ("worker_queue_limit", old.workerQueueLimit != new.workerQueueLimit),
            ("policy_max_line_length", old.policyMaxLineLength != new.policyMaxLineLength),
            ("policy_max_attributes", old.policyMaxAttributes != new.policyMaxAttributes),
            ("policy_max_request_size", old.policyMaxRequestSize != new.policyMaxRequestSize),
            ("socketmap_max_request_size", old.socketmapMaxRequestSize != new.socketmapMaxRequestSize),
            ("idle_timeout", old.idleTimeout != new.idleTimeout),
            ("io_timeout", old.ioTimeout != new.ioTimeout),
            ("max_connections", old.limits.maxConnections != new.limits.maxConnections),
            ("max_connections_per_source", old.limits.maxConnectionsPerSource != new.limits.maxConnectionsPerSource),
            ("drain_timeout", old.limits.drainTimeout != new.limits.drainTimeout),
            ("user", old.privileges.user != new.privileges.user),
            ("group", old.privileges.group != new.privileges.group),
            ("allow_root", old.privileges.allowRoot != new.privileges.allowRoot),
        ]
    }

    private mutating func applyIfChanged<T: Equatable>(_ path: String, _ old: T, _ new: T) {
        if old != new { applied.append(path) }
    }

    private mutating func restartIfChanged<T: Equatable>(_ path: String, _ old: T, _ new: T) {
        if old != new { needRestart.append(path) }
    }
}
