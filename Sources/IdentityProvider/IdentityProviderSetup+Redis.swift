// Builds the shared Redis cache from identity.redis. Sends no command: the
// pool connects on first use, so a Redis server that is down at start
// delays nothing and is retried with backoff.
import Config
import Log
import RedisCache

/// Returns the shared cache, or nil when identity.redis.host is unset.
/// - Throws: `.invalidConfiguration` when the password file cannot be read.
func makeSharedCache(config: IdentityConfig, logger: Logger) throws(IdentityProviderError) -> SharedIdentityCache? {
    let redis = config.redis
    guard let host = redis.host else { return nil }
    var password = redis.password
    if let path = redis.passwordFile {
        password = try KeycloakSettings.readSecretFile(path, key: "identity.redis.password_file").value
    }
    let endpoint = RedisEndpoint(
        host: host, port: redis.port, password: password, database: redis.database,
        connectTimeout: redis.connectTimeout, commandTimeout: redis.commandTimeout)
    let pool = RedisPool(
        endpoint: endpoint, size: redis.poolSize, maxReconnectDelay: redis.maxReconnectDelay, logger: logger)
    let cache = RedisIdentityCache(pool: pool, keyPrefix: redis.keyPrefix)
    return SharedIdentityCache(redis: cache, cache: config.cache, redisConfig: redis)
}
