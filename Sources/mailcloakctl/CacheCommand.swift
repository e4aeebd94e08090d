// `mailcloakctl cache flush [--user U | --address A]`: deletes identity
// answers from the shared Redis cache and publishes a flush message that
// every running instance applies to its in-process cache. Redis settings
// come from identity.redis of the daemon's configuration (--config).
import Config
import Log
import Model
import RedisCache

#if canImport(Glibc)
    import Glibc
#endif

enum CacheCommand {
    private struct FlushResult: Encodable {
        var deleted: Int
        var instancesNotified: Int
        var messages: [String]
    }

    static func run(_ arguments: Arguments) throws(CLIError) {
        let usage = Usage.cache
        guard arguments.words.count >= 2 else { throw .usage("missing subcommand", usage: usage) }
        guard arguments.words[1] == "flush" else {
            throw .usage("unknown cache subcommand \"\(arguments.words[1])\"", usage: usage)
        }
        try arguments.allowOnly(["--user", "--address"], command: "cache flush", usage: usage)
        _ = try arguments.operands(after: 2, names: [], usage: usage)
        let user = arguments.values["--user"]
        let address = arguments.values["--address"]
        if user != nil && address != nil {
            throw .usage("give --user or --address, not both", usage: usage)
        }

        let cache = try openCache(arguments)
        let result: FlushResult
        do throws(RedisError) {
            if let user {
                result = try flushUser(user, in: cache)
            } else if let address {
                result = try flushAddress(address, in: cache)
            } else {
                let deleted = try cache.deleteAll()
                let notified = try cache.publishFlush(FlushMessage.all)
                result = FlushResult(deleted: deleted, instancesNotified: notified, messages: [FlushMessage.all])
            }
        } catch {
            throw .runtime("redis \(cache.pool.endpoint.host):\(cache.pool.endpoint.port): \(error)")
        }
        if arguments.json {
            Output.out(try Output.json(result) + "\n")
        } else {
            Output.out(
                "deleted \(result.deleted) shared entries; \(result.instancesNotified) instances notified\n")
        }
    }

    /// Flushes the username entry and, when the cached answer contains the
    /// user's address, that address's entry too.
    private static func flushUser(_ name: String, in cache: RedisIdentityCache) throws(RedisError) -> FlushResult {
        let key = IdentityKey.username(name.lowercased())
        var keys = [key]
        if case .found(let user)? = try cache.get(key)?.answer, let email = user.email {
            keys.append(.email(email.description))
        }
        return try flush(keys, in: cache)
    }

    private static func flushAddress(_ text: String, in cache: RedisIdentityCache) throws(RedisError) -> FlushResult {
        let canonical = MailAddress(text)?.description ?? text.lowercased()
        return try flush([.email(canonical)], in: cache)
    }

    private static func flush(_ keys: [IdentityKey], in cache: RedisIdentityCache) throws(RedisError) -> FlushResult {
        let deleted = try cache.delete(keys)
        var notified = 0
        for key in keys {
            notified = max(notified, try cache.publishFlush(key.description))
        }
        return FlushResult(deleted: deleted, instancesNotified: notified, messages: keys.map(\.description))
    }

    private static func openCache(_ arguments: Arguments) throws(CLIError) -> RedisIdentityCache {
        guard let path = arguments.values["--config"] else {
            throw .usage("missing --config FILE, whose identity.redis section names the Redis server", usage: Usage.cache)
        }
        let redis: RedisConfig
        do {
            redis = try ConfigLoader.load(path: path).identity.redis
        } catch {
            throw .runtime("cannot use --config \(path): \(error)")
        }
        guard redis.isEnabled else {
            throw .runtime("\(path) sets neither identity.redis.host nor sentinels, so there is no shared cache to flush")
        }
        var password = redis.password
        if let file = redis.passwordFile {
            password = try readPassword(file)
        }
        var endpoint = RedisEndpoint(
            host: redis.host ?? "", port: redis.port, password: password, database: redis.database,
            connectTimeout: redis.connectTimeout, commandTimeout: max(redis.commandTimeout, 5))
        endpoint.sentinels = redis.sentinels.compactMap(RedisAddress.init)
        endpoint.sentinelMaster = redis.sentinelMaster
        let logger = Logger(fileDescriptor: open("/dev/null", O_WRONLY | O_CLOEXEC))
        let pool = RedisPool(endpoint: endpoint, size: 1, maxReconnectDelay: redis.maxReconnectDelay, logger: logger)
        return RedisIdentityCache(pool: pool, keyPrefix: redis.keyPrefix)
    }

    /// Reads the password file, without surrounding whitespace; at most 4 KiB.
    private static func readPassword(_ path: String) throws(CLIError) -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw .runtime("cannot open identity.redis.password_file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 4097)
        let count = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
        guard count >= 0, count <= 4096 else {
            throw .runtime("cannot read identity.redis.password_file \(path): unreadable or larger than 4096 bytes")
        }
        let text = String(decoding: bytes[..<count], as: UTF8.self)
        return String(text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
