// Loads the daemon's YAML configuration into a Configuration. Every key is
// checked: an unknown key, a value of the wrong type or out of range, or a
// missing required key is an error that names the key path and the line.
// Absent keys keep the defaults defined in Configuration.swift.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads and validates configuration files.
public enum ConfigLoader {
    /// The keys allowed in each mapping, by the mapping's key path; `listeners[]` is any listener.
    static let allowedKeys: [(path: String, keys: [String])] = [
        ("", ["listeners", "server", "policy", "database", "identity", "log", "metrics"]),
        ("listeners[]", ["name", "address", "services", "owner", "group", "mode", "tls", "acl", "proxy_protocol_from"]),
        (
            "listeners[].tls",
            [
                "certificate", "key", "client_ca", "crl", "min_version", "ciphers", "cipher_suites", "verify_depth",
                "handshake_timeout", "expiry_warning", "reload_interval", "session_ticket_keys",
                "resumption_max_age",
            ]
        ),
        ("listeners[].acl[]", ["name", "identities", "networks", "services"]),
        (
            "server",
            [
                "reactor_threads", "worker_threads", "worker_queue_limit", "policy_max_line_length",
                "policy_max_attributes", "policy_max_request_size", "socketmap_max_request_size", "idle_timeout",
                "io_timeout",
            ] + serverLimitKeys
        ),
        (
            "policy",
            [
                "failure_mode", "recipient_delimiter", "allow_authenticated_null_sender", "oauth_mechanisms",
                "app_mechanisms",
            ]
        ),
        (
            "database",
            [
                "url", "resync_interval", "connect_timeout", "statement_timeout", "max_reconnect_delay",
                "max_snapshot_age",
            ]
        ),
        ("identity", ["provider", "keycloak", "authentik", "cache", "redis", "breaker"]),
        (
            "identity.keycloak",
            [
                "base_url", "realm", "client_id", "client_secret", "client_secret_file", "request_timeout",
                "connect_timeout", "token_refresh_skew", "require_email_verified", "ca_file",
            ]
        ),
        ("identity.cache", ["max_entries", "positive_ttl", "negative_ttl", "ttl_jitter", "max_staleness"]),
        (
            "identity.redis",
            [
                "host", "port", "sentinels", "sentinel_master", "password", "password_file", "database",
                "key_prefix", "pool_size", "connect_timeout", "command_timeout", "max_reconnect_delay", "lock_ttl",
                "lock_wait",
            ]
        ),
        ("identity.breaker", ["failure_threshold", "initial_backoff", "max_backoff"]),
        (
            "identity.authentik",
            ["base_url", "token", "token_file", "request_timeout", "connect_timeout", "page_size", "ca_file"]
        ),
        ("log", logKeys),
        ("metrics", ["enabled", "listen"]),
    ]

    /// Every leaf key path the loader accepts, such as `server.io_timeout` or `listeners[].name`.
    static var leafKeyPaths: [String] {
        let mappings = Set(allowedKeys.map(\.path))
        return allowedKeys.flatMap { section in
            section.keys.map { keyPath(section.path, $0) }
                .filter { !mappings.contains($0) && $0 != "listeners" }
        }
    }

    /// Reads the file at `path` and parses it with ``parse(yaml:)``.
    ///
    /// - Throws: `ConfigError` with `file` set to `path`.
    public static func load(path: String) throws(ConfigError) -> Configuration {
        do {
            let text = try readFile(path)
            return try parse(yaml: text)
        } catch {
            var located = error
            located.file = path
            throw located
        }
    }

    /// Parses YAML text into a configuration.
    public static func parse(yaml: String) throws(ConfigError) -> Configuration {
        guard let root = try YAMLDocument.parse(yaml) else {
            throw ConfigError(.missingKey, keyPath: "listeners")
        }
        let top = try mapping(root, path: "")
        var configuration = Configuration()
        configuration.listeners = try listenerSection(top)
        if let node = top.node("server") { configuration.server = try serverSection(node) }
        if let node = top.node("policy") { configuration.policy = try policySection(node) }
        if let node = top.node("database") { configuration.database = try databaseSection(node) }
        if let node = top.node("identity") { configuration.identity = try identitySection(node) }
        if let node = top.node("log") { configuration.log = try logSection(node) }
        if let node = top.node("metrics") { configuration.metrics = try metricsSection(node) }
        return configuration
    }

    /// Opens `node` as a mapping with the keys allowed at `path` (`listeners[3]` uses `listeners[]`).
    static func mapping(_ node: YAMLNode, path: String) throws(ConfigError) -> ConfigMapping {
        let pattern = path.replacing(/\[\d+\]/, with: "[]")
        let allowed = allowedKeys.first { $0.path == pattern }!.keys
        return try ConfigMapping(node, path: path, allowed: allowed)
    }

    /// Reads the file until it ends or passes `YAMLDocument.maxSize` bytes, so an oversized file
    /// fails without being read whole.
    private static func readFile(_ path: String) throws(ConfigError) -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ConfigError(.unreadableFile(reason: String(cString: strerror(errno)))) }
        defer { close(descriptor) }

        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count <= YAMLDocument.maxSize {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 { throw ConfigError(.unreadableFile(reason: String(cString: strerror(errno)))) }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        if bytes.count > YAMLDocument.maxSize { throw ConfigError(.documentTooLarge(limit: YAMLDocument.maxSize)) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(.syntax(message: "the file is not valid UTF-8"))
        }
        return text
    }
}
