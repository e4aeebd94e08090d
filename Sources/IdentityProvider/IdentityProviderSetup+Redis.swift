// Builds the shared Redis cache from identity.redis. Sends no command: the
// pool connects on first use, so a Redis server that is down at start
// delays nothing and is retried with backoff.
import Config
import Log
import RedisCache

/// Returns the shared cache, or nil when identity.redis sets neither host nor sentinels.
/// - Throws: `.invalidConfiguration` when the password file cannot be read.
func makeSharedCache(config: IdentityConfig, logger: Logger) throws(IdentityProviderError) -> SharedIdentityCache? {
    let redis = config.redis
    guard redis.isEnabled else { return nil }
    var sentinels: [RedisAddress] = []
    for text in redis.sentinels {
        guard let address = RedisAddress(text) else {
            throw .invalidConfiguration(key: "identity.redis.sentinels", reason: "expected host:port, got \(text)")
        }
        sentinels.append(address)
    }
    var password = redis.password
    if let path = redis.passwordFile {
        password = try KeycloakSettings.readSecretFile(path, key: "identity.redis.password_file").value
    }
    var endpoint = RedisEndpoint(
        host: redis.host ?? "", port: redis.port, password: password, database: redis.database,
        connectTimeout: redis.connectTimeout, commandTimeout: redis.commandTimeout)
    endpoint.sentinels = sentinels
    endpoint.sentinelMaster = redis.sentinelMaster
    let pool = RedisPool(
        endpoint: endpoint, size: redis.poolSize, maxReconnectDelay: redis.maxReconnectDelay, logger: logger)
    let cache = RedisIdentityCache(pool: pool, keyPrefix: redis.keyPrefix)
    return SharedIdentityCache(redis: cache, cache: config.cache, redisConfig: redis)
}
