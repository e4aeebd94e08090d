import Config
import Log
import Model

// Entry points the daemon calls: build the directory from configuration,
// and check that the identity provider can serve lookups (a token, a
// service account allowed to read users, one real user query).
#if canImport(Glibc)
    import Glibc
#endif

/// Builds the cached identity directory described by `config`. Sends no
/// request: call `checkProvider()` on the result, or
/// `checkIdentityProvider(config:)`, to test the provider.
/// - Throws: `IdentityProviderError.invalidConfiguration` naming the key.
public func makeIdentityDirectory(config: IdentityConfig, logger: Logger) throws -> CachedIdentityDirectory {
    try makeIdentityDirectory(config: config, logger: logger, clock: monotonicNanoseconds)
}

/// Checks the identity provider once with a directory of its own: obtains a
/// token, requires the realm-management role view-users or manage-users in
/// it, and runs one user query.
/// - Returns: a one-line summary, or the first problem found.
public func checkIdentityProvider(config: IdentityConfig) -> Result<String, IdentityProviderError> {
    do {
        return try makeIdentityDirectory(config: config, logger: Logger.shared, clock: monotonicNanoseconds)
            .checkProvider()
    } catch {
        return .failure(error)
    }
}

/// Builds the directory with an injected clock, for tests.
func makeIdentityDirectory(
    config: IdentityConfig, logger: Logger, clock: @escaping MonotonicClock
) throws(IdentityProviderError) -> CachedIdentityDirectory {
    let backend: any IdentityBackend
    switch config.provider {
    case .keycloak: backend = try makeKeycloakBackend(config: config, logger: logger, clock: clock)
    case .authentik: backend = try makeAuthentikBackend(config: config.authentik, logger: logger)
    }
    let cache = IdentityCache(
        maxEntries: config.cache.maxEntries, positiveTTL: config.cache.positiveTTL,
        negativeTTL: config.cache.negativeTTL, staleWindow: config.cache.maxStaleness,
        jitter: config.cache.ttlJitter, clock: clock)
    let shared = try makeSharedCache(config: config, logger: logger)
    logger.info(
        "identity cache configured",
        [
            (.provider, backend.name), (.limit, "\(config.cache.maxEntries)"),
            (.address, describeSharedCache(config.redis)),
        ])
    return CachedIdentityDirectory(
        config: config, backend: backend, cache: cache, shared: shared, logger: logger, clock: clock)
}

private func describeSharedCache(_ redis: RedisConfig) -> String {
    if !redis.sentinels.isEmpty {
        return "redis primary \(redis.sentinelMaster) via sentinels \(redis.sentinels.joined(separator: ","))"
    }
    return redis.host.map { "redis \($0):\(redis.port)" } ?? "no shared cache"
}

private func makeKeycloakBackend(
    config: IdentityConfig, logger: Logger, clock: @escaping MonotonicClock
) throws(IdentityProviderError) -> KeycloakBackend {
    let keycloak = config.keycloak
    let settings = try KeycloakSettings(config)
    let http: HTTPClient
    do {
        http = try HTTPClient(
            options: HTTPClientOptions(
                timeout: keycloak.requestTimeout, connectTimeout: keycloak.connectTimeout, caFile: keycloak.caFile))
    } catch {
        throw .invalidConfiguration(key: "identity.keycloak", reason: "\(error)")
    }
    let tokens = KeycloakTokenProvider(
        config: keycloak, baseURL: settings.baseURL, clientSecret: settings.secret, http: http, logger: logger,
        clock: clock)
    let client = KeycloakClient(config: keycloak, baseURL: settings.baseURL, tokens: tokens, http: http, logger: logger)
    logger.info(
        "identity provider configured",
        [
            (.provider, "keycloak"), (.url, Secret.redactingUserInfo(settings.baseURL)), (.realm, keycloak.realm),
            (.user, keycloak.clientID),
        ])
    return KeycloakBackend(config: keycloak, client: client, tokens: tokens)
}

private func makeAuthentikBackend(
    config: AuthentikConfig, logger: Logger
) throws(IdentityProviderError) -> AuthentikBackend {
    var baseURL = Substring(config.baseURL)
    while baseURL.hasSuffix("/") { baseURL = baseURL.dropLast() }
    let token: Secret
    if let path = config.tokenFile {
        token = try KeycloakSettings.readSecretFile(path, key: "identity.authentik.token_file")
    } else if !config.token.isEmpty {
        token = Secret(config.token)
    } else {
        throw .invalidConfiguration(key: "identity.authentik.token", reason: "missing: set token or token_file")
    }
    let http: HTTPClient
    do {
        http = try HTTPClient(
            options: HTTPClientOptions(
                timeout: config.requestTimeout, connectTimeout: config.connectTimeout, caFile: config.caFile))
    } catch {
        throw .invalidConfiguration(key: "identity.authentik", reason: "\(error)")
    }
    let client = AuthentikClient(config: config, baseURL: String(baseURL), token: token, http: http, logger: logger)
    logger.info("identity provider configured", [
        (.provider, "authentik"), (.url, Secret.redactingUserInfo(String(baseURL))),
    ])
    return AuthentikBackend(config: config, client: client)
}

/// Runs the provider check against a token provider and client.
enum IdentityProviderCheck {
    /// Checks token, roles and one user query, in that order.
    ///
    /// NOTE: The roles are read from the token's `resource_access` claim. A
    /// client set to always use lightweight access tokens (Keycloak 24 and
    /// later) gets tokens without that claim and fails this check even when
    /// its service account has view-users.
    static func run(
        keycloak: KeycloakConfig, tokens: KeycloakTokenProvider, client: KeycloakClient
    ) -> Result<String, IdentityProviderError> {
        let token: AccessToken
        do {
            token = try tokens.token()
        } catch {
            return .failure(.tokenRequestFailed(reason: reason(error)))
        }
        let claims: AccessTokenClaims
        do {
            claims = try AccessTokenClaims.decode(jwt: token.value.value)
        } catch {
            return .failure(.unreadableToken(reason: error.reason))
        }
        let roles: [String]
        switch UserReadRoles.check(claims, clientID: keycloak.clientID, realm: keycloak.realm) {
        case .success(let granted): roles = granted
        case .failure(let error): return .failure(error)
        }
        // The service account's own user is visible to field filters, so a
        // query for it exercises the same endpoint and parameters as lookups.
        let probe = "service-account-\(keycloak.clientID.lowercased())"
        let users: [KeycloakUserRepresentation]
        do {
            users = try client.queryUsers(field: "username", value: probe, max: 1)
        } catch {
            return .failure(.userQueryFailed(reason: reason(error)))
        }
        let granted = roles.filter { UserReadRoles.sufficient.contains($0) }.sorted().joined(separator: ",")
        return .success(
            "Keycloak realm \(keycloak.realm): client \(keycloak.clientID) has realm-management \(granted); "
                + "user query returned \(users.count) user(s); token lifetime \(token.expiresIn) s")
    }

    private static func reason(_ error: IdentityLookupError) -> String {
        switch error {
        case .unavailable(let reason): reason
        case .overloaded: "overloaded"
        }
    }
}

/// Keycloak settings checked at start, with the client secret resolved.
struct KeycloakSettings {
    /// Base URL without a trailing slash.
    let baseURL: String
    let secret: Secret

    /// Largest client secret file read, in bytes.
    static let maxSecretFileBytes = 4096

    init(_ config: IdentityConfig) throws(IdentityProviderError) {
        let keycloak = config.keycloak
        baseURL = try Self.validatedBaseURL(keycloak.baseURL)
        guard !keycloak.realm.isEmpty else {
            throw .invalidConfiguration(key: "identity.keycloak.realm", reason: "must not be empty")
        }
        guard !keycloak.clientID.isEmpty else {
            throw .invalidConfiguration(key: "identity.keycloak.client_id", reason: "must not be empty")
        }
        try Self.requirePositive(keycloak.requestTimeout, key: "identity.keycloak.request_timeout")
        try Self.requirePositive(keycloak.connectTimeout, key: "identity.keycloak.connect_timeout")
        try Self.requireNonNegative(keycloak.tokenRefreshSkew, key: "identity.keycloak.token_refresh_skew")
        try Self.requireNonNegative(config.cache.positiveTTL, key: "identity.cache.positive_ttl")
        try Self.requireNonNegative(config.cache.negativeTTL, key: "identity.cache.negative_ttl")
        guard config.cache.maxEntries >= 0 else {
            throw .invalidConfiguration(
                key: "identity.cache.max_entries", reason: "must be 0 or more, got \(config.cache.maxEntries)")
        }
        if let path = keycloak.clientSecretFile {
            secret = try Self.readSecretFile(path, key: "identity.keycloak.client_secret_file")
        } else if !keycloak.clientSecret.isEmpty {
            secret = Secret(keycloak.clientSecret)
        } else {
            throw .invalidConfiguration(
                key: "identity.keycloak.client_secret", reason: "missing: set client_secret or client_secret_file")
        }
    }

    private static func validatedBaseURL(_ text: String) throws(IdentityProviderError) -> String {
        let key = "identity.keycloak.base_url"
        var url = Substring(text)
        while url.hasSuffix("/") { url = url.dropLast() }
        let rest: Substring
        if url.hasPrefix("http://") {
            rest = url.dropFirst("http://".count)
        } else if url.hasPrefix("https://") {
            rest = url.dropFirst("https://".count)
        } else {
            throw .invalidConfiguration(key: key, reason: "expected an http:// or https:// URL, got \"\(text)\"")
        }
        guard !rest.isEmpty, !rest.hasPrefix("/") else {
            throw .invalidConfiguration(key: key, reason: "missing host in \"\(text)\"")
        }
        guard !url.contains("?"), !url.contains("#"), !url.contains(where: { $0.isWhitespace }) else {
            throw .invalidConfiguration(
                key: key, reason: "expected a base URL without query, fragment or spaces, got \"\(text)\"")
        }
        return String(url)
    }

    private static func requirePositive(_ value: Double, key: String) throws(IdentityProviderError) {
        guard value.isFinite, value > 0 else {
            throw .invalidConfiguration(key: key, reason: "must be a number of seconds above 0, got \(value)")
        }
    }

    private static func requireNonNegative(_ value: Double, key: String) throws(IdentityProviderError) {
        guard value.isFinite, value >= 0 else {
            throw .invalidConfiguration(key: key, reason: "must be a number of seconds, 0 or more, got \(value)")
        }
    }

    /// Reads the client secret from `path`, trimming surrounding whitespace
    /// such as the final newline most editors add.
    static func readSecretFile(_ path: String, key: String) throws(IdentityProviderError) -> Secret {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw .invalidConfiguration(key: key, reason: "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: maxSecretFileBytes + 1)
        var length = 0
        while length < bytes.count {
            let count = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + length, $0.count - length) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else {
                throw .invalidConfiguration(
                    key: key, reason: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            length += count
        }
        guard length <= maxSecretFileBytes else {
            throw .invalidConfiguration(key: key, reason: "\(path) is larger than \(maxSecretFileBytes) bytes")
        }
        let text = String(decoding: bytes[..<length], as: UTF8.self)
        let trimmed = text.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed()
        guard !trimmed.isEmpty else {
            throw .invalidConfiguration(key: key, reason: "\(path) is empty")
        }
        return Secret(String(trimmed))
    }
}
