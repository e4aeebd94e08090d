// The server, policy, database and identity sections. Each range below
// is the one docs/configuration.md shows; the defaults come from
// Configuration.swift.

extension ConfigLoader {
    static func serverSection(_ node: YAMLNode) throws(ConfigError) -> ServerConfig {
        let section = try mapping(node, path: "server")
        var server = ServerConfig()
        try section.readInt("reactor_threads", into: &server.reactorThreads, range: 0...256)
        try section.readInt("worker_threads", into: &server.workerThreads, range: 1...1024)
        try section.readInt("worker_queue_limit", into: &server.workerQueueLimit, range: 1...1_000_000)
        try section.readInt("policy_max_line_length", into: &server.policyMaxLineLength, range: 256...1_048_576)
        try section.readInt("policy_max_attributes", into: &server.policyMaxAttributes, range: 32...10_000)
        try section.readInt("policy_max_request_size", into: &server.policyMaxRequestSize, range: 1024...16_777_216)
        try section.readInt(
            "socketmap_max_request_size", into: &server.socketmapMaxRequestSize, range: 1024...1_048_576)
        try section.readDuration("idle_timeout", into: &server.idleTimeout, range: 1...86_400)
        try section.readDuration("io_timeout", into: &server.ioTimeout, range: 0.1...3600)
        try readServerLimits(section, into: &server.limits)
        try readServerPrivileges(section, into: &server.privileges)

        // A request holding one line of the maximum length needs that line, its newline and the blank line.
        if server.policyMaxRequestSize < server.policyMaxLineLength + 2 {
            try conflict(
                section, "policy_max_request_size", "policy_max_line_length",
                expected: "policy_max_request_size of at least policy_max_line_length + 2"
                    + " (\(server.policyMaxLineLength + 2))")
        }
        if server.ioTimeout > server.idleTimeout {
            try conflict(section, "io_timeout", "idle_timeout", expected: "io_timeout no longer than idle_timeout")
        }
        return server
    }

    static func policySection(_ node: YAMLNode) throws(ConfigError) -> PolicyConfig {
        let section = try mapping(node, path: "policy")
        var policy = PolicyConfig()
        try section.readChoice("failure_mode", into: &policy.failureMode, choices: [.tempfail, .dunno])
        if let node = section.node("recipient_delimiter") {
            policy.recipientDelimiter = try recipientDelimiter(node, path: section.path("recipient_delimiter"))
        }
        try section.readBool("allow_authenticated_null_sender", into: &policy.allowAuthenticatedNullSender)
        if let node = section.node("oauth_mechanisms") {
            policy.oauthMechanisms = try mechanisms(node, path: section.path("oauth_mechanisms"))
        }
        if let node = section.node("app_mechanisms") {
            policy.appMechanisms = try mechanisms(node, path: section.path("app_mechanisms"))
        }

        let shared = policy.oauthMechanisms.intersection(policy.appMechanisms)
        if !shared.isEmpty {
            try conflict(
                section, "app_mechanisms", "oauth_mechanisms",
                expected: "no mechanism in both oauth_mechanisms and app_mechanisms (both have "
                    + shared.sorted().joined(separator: ", ") + ")")
        }
        return policy
    }

    static func databaseSection(_ node: YAMLNode) throws(ConfigError) -> DatabaseConfig {
        let section = try mapping(node, path: "database")
        var database = DatabaseConfig()
        // The URL may carry a password, so errors never show it.
        try section.readString("url", into: &database.url, secret: true)
        try section.readDuration("resync_interval", into: &database.resyncInterval, range: 10...86_400)
        try section.readDuration("connect_timeout", into: &database.connectTimeout, range: 0.1...300)
        try section.readDuration("statement_timeout", into: &database.statementTimeout, range: 0.1...3600)
        try section.readDuration("max_reconnect_delay", into: &database.maxReconnectDelay, range: 0.1...3600)
        try section.readDuration("max_snapshot_age", into: &database.maxSnapshotAge, range: 20...604_800)

        if database.maxSnapshotAge <= database.resyncInterval {
            try conflict(
                section, "max_snapshot_age", "resync_interval",
                expected: "max_snapshot_age longer than resync_interval (\(formatDuration(database.resyncInterval)))")
        }
        return database
    }

    static func identitySection(_ node: YAMLNode) throws(ConfigError) -> IdentityConfig {
        let section = try mapping(node, path: "identity")
        var identity = IdentityConfig()
        try section.readChoice("provider", into: &identity.provider, choices: [.keycloak, .authentik])
        if let node = section.node("keycloak") { identity.keycloak = try keycloakSection(node) }
        if let node = section.node("authentik") { identity.authentik = try authentikSection(node) }
        if let node = section.node("cache") { identity.cache = try identityCacheSection(node) }
        if let node = section.node("redis") { identity.redis = try redisSection(node) }
        if let node = section.node("breaker") { identity.breaker = try breakerSection(node) }
        return identity
    }

    static func keycloakSection(_ node: YAMLNode) throws(ConfigError) -> KeycloakConfig {
        let section = try mapping(node, path: "identity.keycloak")
        var keycloak = KeycloakConfig()
        if let node = section.node("base_url") {
            keycloak.baseURL = try baseURL(node, path: section.path("base_url"))
        }
        try section.readString("realm", into: &keycloak.realm)
        if keycloak.realm.contains("/") {
            throw invalid(section.node("realm")!, section.path("realm"), expected: "a realm name without /")
        }
        try section.readString("client_id", into: &keycloak.clientID)
        try section.readString("client_secret", into: &keycloak.clientSecret, allowEmpty: true, secret: true)
        try section.readOptionalString("client_secret_file", into: &keycloak.clientSecretFile)
        try section.readDuration("request_timeout", into: &keycloak.requestTimeout, range: 0.1...300)
        try section.readDuration("connect_timeout", into: &keycloak.connectTimeout, range: 0.1...300)
        try section.readDuration("token_refresh_skew", into: &keycloak.tokenRefreshSkew, range: 0...3600)
        try section.readBool("require_email_verified", into: &keycloak.requireEmailVerified)
        try section.readOptionalString("ca_file", into: &keycloak.caFile)

        if keycloak.connectTimeout > keycloak.requestTimeout {
            try conflict(
                section, "connect_timeout", "request_timeout",
                expected: "connect_timeout no longer than request_timeout (\(formatDuration(keycloak.requestTimeout)))")
        }
        return keycloak
    }

    static func identityCacheSection(_ node: YAMLNode) throws(ConfigError) -> IdentityCacheConfig {
        let section = try mapping(node, path: "identity.cache")
        var cache = IdentityCacheConfig()
        try section.readInt("max_entries", into: &cache.maxEntries, range: 1...10_000_000)
        try section.readDuration("positive_ttl", into: &cache.positiveTTL, range: 1...86_400)
        try section.readDuration("negative_ttl", into: &cache.negativeTTL, range: 1...86_400)
        try section.readFraction("ttl_jitter", into: &cache.ttlJitter, range: 0...0.5)
        try section.readDuration("max_staleness", into: &cache.maxStaleness, range: 0...604_800)
        return cache
    }

    /// Throws for two keys whose values contradict each other, naming `key` when it is present, else `other`.
    private static func conflict(
        _ section: ConfigMapping, _ key: String, _ other: String, expected: String
    ) throws(ConfigError) -> Never {
        if let node = section.node(key) { throw invalid(node, section.path(key), expected: expected) }
        let node = section.node(other)!
        throw invalid(node, section.path(other), expected: expected)
    }

    /// Characters that start an address extension: up to 8 ASCII punctuation characters other than `@` and `"`.
    private static func recipientDelimiter(_ node: YAMLNode, path: String) throws(ConfigError) -> String {
        let allowed = "!#$%&'()*+,-./:;<=>?[\\]^_`{|}~"
        let text = try string(node, path: path, allowEmpty: true)
        guard text.count <= 8, text.allSatisfy({ allowed.contains($0) }) else {
            throw invalid(node, path, expected: "up to 8 ASCII punctuation characters other than @ and \", such as + or +-")
        }
        return text
    }

    /// Reads a list of SASL mechanism names (RFC 4422: 1 to 20 of A-Z, 0-9, - and _) and lower-cases them.
    private static func mechanisms(_ node: YAMLNode, path: String) throws(ConfigError) -> Set<String> {
        guard case .sequence(let items) = node.content else {
            throw invalid(node, path, expected: "a sequence of SASL mechanism names")
        }
        var names: Set<String> = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            let name = try string(item, path: itemPath)
            let valid = name.utf8.count <= 20 && name.unicodeScalars.allSatisfy { scalar in
                scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "_")
            }
            guard valid else {
                throw invalid(item, itemPath, expected: "a SASL mechanism name of 1 to 20 letters, digits, - or _")
            }
            names.insert(name.lowercased())
        }
        return names
    }

    /// Checks an http or https URL of Keycloak's root, without `/realms`, `/admin`, a query or a fragment.
    private static func baseURL(_ node: YAMLNode, path: String) throws(ConfigError) -> String {
        let expected = "an http:// or https:// URL of the Keycloak root, without /realms, /admin, ? or #"
        let text = try string(node, path: path)
        guard let scheme = ["http://", "https://"].first(where: { text.hasPrefix($0) }) else {
            throw invalid(node, path, expected: expected)
        }
        let rest = text.dropFirst(scheme.count)
        let host = rest.prefix { $0 != "/" }
        let urlPath = rest.dropFirst(host.count)
        let pathBlocked = urlPath.contains("/realms") || urlPath.contains("/admin")
        if host.isEmpty || pathBlocked || text.contains("?") || text.contains("#") || text.contains(" ") {
            throw invalid(node, path, expected: expected)
        }
        return text
    }
}
