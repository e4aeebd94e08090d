// The directory with a real redis-server and the Keycloak development
// directory: sharing between instances, single-flight, negative caching,
// Redis outages and cache flushes. "Instances" are separate directory
// objects, each with its own in-process cache and Redis pool.
import Config
import Model
import RedisCache
import TestSupport
import Testing

@testable import IdentityProvider

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.serialized) final class SharedCacheTests {
    let keycloak: KeycloakDevServer
    let redis: RedisTestServer

    init() throws {
        keycloak = try KeycloakDevServer()
        redis = try RedisTestServer()
    }

    deinit {
        try? keycloak.reset()
        keycloak.stop()
        redis.stop()
    }

    func config(lockWait: Double = 2) -> IdentityConfig {
        var config = keycloak.identityConfig()
        var shared = RedisConfig()
        shared.host = "127.0.0.1"
        shared.port = redis.port
        shared.keyPrefix = "test"
        shared.lockWait = lockWait
        shared.maxReconnectDelay = 0.2
        config.redis = shared
        return config
    }

    func instance(_ config: IdentityConfig? = nil) throws -> CachedIdentityDirectory {
        try makeIdentityDirectory(config: config ?? self.config(), logger: quietLogger)
    }

    static let alice = IdentityAnswer.found(IdentityUser(username: "alice", email: MailAddress("alice@example.com")))

    @Test func concurrentMissesCallProviderOnce() throws {
        let directory = try instance()
        let answers = Collector<IdentityAnswer?>()
        runOnThreads(100) { _ in answers.append(try? directory.lookup(.email("alice@example.com"))) }
        #expect(answers.values.count == 100)
        #expect(answers.values.allSatisfy { $0 == Self.alice })
        #expect(try keycloak.stats().requests("users") == 1)
    }

    @Test func threeInstancesShareLookups() throws {
        let instances = try (0..<3).map { _ in try instance() }
        let keys: [IdentityKey] = [
            .email("alice@example.com"), .username("bob"), .email("nobody@example.com"), .username("alice"),
        ]
        let failures = Collector<IdentityKey>()
        runOnThreads(60) { index in
            let directory = instances[index % 3]
            for offset in 0..<keys.count {
                let key = keys[(index + offset) % keys.count]
                if (try? directory.lookup(key)) == nil { failures.append(key) }
            }
        }
        #expect(failures.values.isEmpty)
        #expect(try keycloak.stats().requests("users") == keys.count)
        for directory in instances {
            #expect(directory.tokensObtained <= 1)
        }
    }

    @Test func secondInstanceReadsRedis() throws {
        let first = try instance()
        let second = try instance()
        #expect(try first.lookup(.email("alice@example.com")) == Self.alice)
        #expect(try second.lookup(.email("alice@example.com")) == Self.alice)
        #expect(second.stats.l2Hits == 1)
        #expect(second.tokensObtained == 0)
        #expect(try keycloak.stats().requests("users") == 1)
    }

    @Test func negativeAnswerIsShared() throws {
        let first = try instance()
        let second = try instance()
        #expect(try first.lookup(.email("ghost@example.com")) == .notFound)
        #expect(try second.lookup(.email("ghost@example.com")) == .notFound)
        #expect(second.stats.l2Hits == 1)
        #expect(try keycloak.stats().requests("users") == 1)
    }

    @Test func redisEntryCarriesBothTTLs() throws {
        var config = config()
        config.cache.positiveTTL = 300
        config.cache.ttlJitter = 0.1
        config.cache.maxStaleness = 600
        _ = try instance(config).lookup(.username("bob"))
        guard case .integer(let ttl) = try redis.command(["PTTL", "test:id:v1:username:bob"]) else {
            Issue.record("no PTTL")
            return
        }
        #expect(ttl > 870_000)
        #expect(ttl <= 930_000)
    }

    @Test func sentinelLeadsToPrimary() throws {
        let sentinel = try RedisTestServer(sentinelFor: redis, master: "mc")
        defer { sentinel.stop() }
        var config = config()
        config.redis.host = nil
        config.redis.sentinels = ["127.0.0.1:\(sentinel.port)"]
        config.redis.sentinelMaster = "mc"
        _ = try instance(config).lookup(.username("bob"))
        #expect(try redis.command(["EXISTS", "test:id:v1:username:bob"]) == .integer(1))
    }

    @Test func redisDownLookupsStillSucceed() throws {
        let directory = try instance()
        redis.kill()
        #expect(try directory.lookup(.email("alice@example.com")) == Self.alice)
        #expect(try directory.lookup(.username("bob")) != .notFound)
        #expect(directory.stats.redisErrors > 0)
    }

    @Test func pausedRedisLookupsStillSucceed() throws {
        var config = config()
        config.redis.commandTimeout = 0.1
        let directory = try instance(config)
        _ = try directory.lookup(.username("alice"))
        redis.pause()
        defer { redis.resume() }
        #expect(try directory.lookup(.username("bob")) != .notFound)
        #expect(try directory.lookup(.email("alice@example.com")) != .notFound)
        #expect(directory.stats.redisErrors > 0)
    }

    @Test func redisKilledMidRunNoFailures() throws {
        let directories = try (0..<3).map { _ in try instance() }
        let failures = Collector<String>()
        let keys = (0..<30).map { IdentityKey.email("user\($0)@example.com") }
        let redis = redis
        runOnThreads(12) { index in
            for round in 0..<40 {
                if index == 0 && round == 10 { redis.kill() }
                let key = keys[(index * 7 + round) % keys.count]
                do {
                    _ = try directories[index % 3].lookup(key)
                } catch {
                    failures.append("\(key): \(error)")
                }
            }
        }
        #expect(failures.values == [])
    }

    @Test func redisReturnsAfterOutage() throws {
        let directory = try instance()
        redis.kill()
        _ = try directory.lookup(.username("alice"))
        try redis.start()
        // The pool reconnects after its backoff (0.2 s at most here).
        usleep(400_000)
        _ = try directory.lookup(.username("bob"))
        #expect(try redis.command(["EXISTS", "test:id:v1:username:bob"]) == .integer(1))
    }

    @Test func flushReachesOtherInstances() throws {
        let first = try instance()
        let second = try instance()
        first.start()
        second.start()
        defer {
            first.stop()
            second.stop()
        }
        #expect(waitUntil { first.isSubscribedToFlushes })
        #expect(waitUntil { second.isSubscribedToFlushes })
        _ = try first.lookup(.email("alice@example.com"))
        _ = try second.lookup(.email("alice@example.com"))
        #expect(second.cachedAnswer(for: .email("alice@example.com")) == Self.alice)

        let shared = try #require(first.shared)
        #expect(try shared.redis.delete([.email("alice@example.com")]) == 1)
        #expect(try shared.redis.publishFlush("email:alice@example.com") == 2)
        #expect(waitUntil { second.cache.answer(for: .email("alice@example.com")) == nil })
        #expect(waitUntil { first.cache.answer(for: .email("alice@example.com")) == nil })
    }

    @Test func flushAllClearsEveryEntry() throws {
        let directory = try instance()
        directory.start()
        defer { directory.stop() }
        #expect(waitUntil { directory.isSubscribedToFlushes })
        _ = try directory.lookup(.username("alice"))
        _ = try directory.lookup(.username("bob"))
        let shared = try #require(directory.shared)
        #expect(try shared.redis.deleteAll() == 2)
        _ = try shared.redis.publishFlush(FlushMessage.all)
        #expect(waitUntil { directory.cache.count == 0 })
    }
}
