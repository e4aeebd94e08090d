// The identity.redis, identity.breaker and identity.authentik sections.
// Each range below is the one docs/configuration.md shows; the defaults
// come from Configuration+Identity.swift.

extension ConfigMapping {
    /// Reads `key` as a decimal fraction in `range` into `value`, when present.
    func readFraction(_ key: String, into value: inout Double, range: ClosedRange<Double>) throws(ConfigError) {
        guard let node = node(key) else { return }
        let expected = "a number from \(range.lowerBound) to \(range.upperBound)"
        guard let text = node.scalarText, text.allSatisfy({ $0 == "." || ("0"..."9").contains($0) }),
            let number = Double(text), range.contains(number)
        else { throw invalid(node, path(key), expected: expected) }
        value = number
    }
}

extension ConfigLoader {
    static func redisSection(_ node: YAMLNode) throws(ConfigError) -> RedisConfig {
        let section = try mapping(node, path: "identity.redis")
        var redis = RedisConfig()
        try section.readOptionalString("host", into: &redis.host)
        try section.readInt("port", into: &redis.port, range: 1...65_535)
        if let node = section.node("sentinels") {
            redis.sentinels = try sentinelAddresses(node, path: section.path("sentinels"))
        }
        try section.readString("sentinel_master", into: &redis.sentinelMaster)
        try section.readOptionalSecret("password", into: &redis.password)
        try section.readOptionalString("password_file", into: &redis.passwordFile)
        try section.readInt("database", into: &redis.database, range: 0...1023)
        try section.readString("key_prefix", into: &redis.keyPrefix)
        if redis.keyPrefix.contains(where: { $0 == " " || $0 == "*" || $0 == "?" || $0 == "[" }) {
            throw invalid(
                section.node("key_prefix")!, section.path("key_prefix"),
                expected: "a prefix without spaces or the glob characters * ? [")
        }
        try section.readInt("pool_size", into: &redis.poolSize, range: 1...1024)
        try section.readDuration("connect_timeout", into: &redis.connectTimeout, range: 0.01...60)
        try section.readDuration("command_timeout", into: &redis.commandTimeout, range: 0.01...60)
        try section.readDuration("max_reconnect_delay", into: &redis.maxReconnectDelay, range: 0.1...3600)
        try section.readDuration("lock_ttl", into: &redis.lockTTL, range: 0.1...600)
        try section.readDuration("lock_wait", into: &redis.lockWait, range: 0...600)

        if redis.lockWait > redis.lockTTL {
            try identityConflict(section, "lock_wait", "lock_ttl", expected: "lock_wait no longer than lock_ttl")
        }
        return redis
    }

    static func breakerSection(_ node: YAMLNode) throws(ConfigError) -> CircuitBreakerConfig {
        let section = try mapping(node, path: "identity.breaker")
        var breaker = CircuitBreakerConfig()
        try section.readInt("failure_threshold", into: &breaker.failureThreshold, range: 1...1000)
        try section.readDuration("initial_backoff", into: &breaker.initialBackoff, range: 0.01...3600)
        try section.readDuration("max_backoff", into: &breaker.maxBackoff, range: 0.01...86_400)

        if breaker.initialBackoff > breaker.maxBackoff {
            try identityConflict(
                section, "initial_backoff", "max_backoff", expected: "initial_backoff no longer than max_backoff")
        }
        return breaker
    }

    static func authentikSection(_ node: YAMLNode) throws(ConfigError) -> AuthentikConfig {
        let section = try mapping(node, path: "identity.authentik")
        var authentik = AuthentikConfig()
        if let node = section.node("base_url") {
            authentik.baseURL = try authentikBaseURL(node, path: section.path("base_url"))
        }
        try section.readString("token", into: &authentik.token, allowEmpty: true, secret: true)
        try section.readOptionalString("token_file", into: &authentik.tokenFile)
        try section.readDuration("request_timeout", into: &authentik.requestTimeout, range: 0.1...300)
        try section.readDuration("connect_timeout", into: &authentik.connectTimeout, range: 0.1...300)
        try section.readInt("page_size", into: &authentik.pageSize, range: 1...1000)
        try section.readOptionalString("ca_file", into: &authentik.caFile)

        if authentik.connectTimeout > authentik.requestTimeout {
            try identityConflict(
                section, "connect_timeout", "request_timeout",
                expected: "connect_timeout no longer than request_timeout (\(formatDuration(authentik.requestTimeout)))")
        }
        return authentik
    }

    /// Reads a sequence of `host:port` strings.
    private static func sentinelAddresses(_ node: YAMLNode, path: String) throws(ConfigError) -> [String] {
        let expected = "host:port with a port from 1 to 65535"
        guard case .sequence(let items) = node.content else {
            throw invalid(node, path, expected: "a sequence of \(expected)")
        }
        var addresses: [String] = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            let text = try string(item, path: itemPath)
            guard let colon = text.lastIndex(of: ":"), colon != text.startIndex,
                let port = Int(text[text.index(after: colon)...]), (1...65_535).contains(port)
            else { throw invalid(item, itemPath, expected: expected) }
            addresses.append(text)
        }
        return addresses
    }

    /// Throws for two keys whose values contradict each other, at `key` when it is set, else at `other`.
    private static func identityConflict(
        _ section: ConfigMapping, _ key: String, _ other: String, expected: String
    ) throws(ConfigError) -> Never {
        if let node = section.node(key) { throw invalid(node, section.path(key), expected: expected) }
        throw invalid(section.node(other)!, section.path(other), expected: expected)
    }

    /// Checks an http or https URL of Authentik's root, without `/api`, a query or a fragment.
    private static func authentikBaseURL(_ node: YAMLNode, path: String) throws(ConfigError) -> String {
        let expected = "an http:// or https:// URL of the Authentik root, without /api, ? or #"
        let text = try string(node, path: path)
        guard let scheme = ["http://", "https://"].first(where: { text.hasPrefix($0) }) else {
            throw invalid(node, path, expected: expected)
        }
        let rest = text.dropFirst(scheme.count)
        let host = rest.prefix { $0 != "/" }
        let urlPath = rest.dropFirst(host.count)
        if host.isEmpty || urlPath.contains("/api") || text.contains("?") || text.contains("#") || text.contains(" ") {
            throw invalid(node, path, expected: expected)
        }
        return text
    }
}

extension ConfigMapping {
    /// Reads `key` as a secret string into `value`, when present; a null value sets nil.
    func readOptionalSecret(_ key: String, into value: inout String?) throws(ConfigError) {
        guard let node = node(key) else { return }
        value = node.isNull ? nil : try string(node, path: path(key), secret: true)
    }
}
