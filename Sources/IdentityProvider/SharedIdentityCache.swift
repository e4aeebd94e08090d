// The directory's use of the shared Redis cache: TTLs with jitter, the
// fetch lock with polling for another instance's answer, and error handling
// that turns every Redis failure into "no shared cache this time". The pool
// logs each outage once and counts its errors.
import Config
import Model
import RedisCache
import Locking

#if canImport(Glibc)
    import Glibc
#endif

/// The shared cache as the directory uses it. Thread-safe and blocking.
final class SharedIdentityCache: Sendable {
    enum Lookup {
        case fresh(IdentityAnswer, freshFor: Double)
        case stale(IdentityAnswer)
        case miss
    }

    /// A held fetch lock.
    struct Lock {
        let key: IdentityKey
        let owner: String
    }

    enum LockOutcome {
        /// Another instance stored the answer while this one waited.
        case answer(IdentityAnswer, freshFor: Double)
        /// This instance holds the lock and calls the provider.
        case locked(Lock)
        /// Call the provider without the lock (Redis failed or the wait ran out).
        case proceed
    }

    let redis: RedisIdentityCache
    /// TTLs and the stale window of the entries this instance writes; a reload replaces them.
    private let ttls: Locked<IdentityCacheConfig>
    private let lockTTL: Double
    private let lockWait: Double
    /// Pause between reads while another instance holds the lock, in microseconds.
    private static let pollInterval: UInt32 = 10_000

    init(redis: RedisIdentityCache, cache: IdentityCacheConfig, redisConfig: RedisConfig) {
        self.redis = redis
        ttls = Locked(cache)
        lockTTL = redisConfig.lockTTL
        lockWait = redisConfig.lockWait
    }

    /// Uses `cache`'s TTLs, jitter and stale window for the entries written from now on.
    func reconfigure(_ cache: IdentityCacheConfig) {
        ttls.withLock { $0 = cache }
    }

    // Redis errors below fall back to the provider (a miss, or `.proceed` without a lock) and are
    // not raised. RedisPool counts each one in mailcloak_redis_errors_total and logs it, or the outage
    // it belongs to, rate-limited.

    func get(_ key: IdentityKey) -> Lookup {
        guard let entry = try? redis.get(key) else { return .miss }
        if entry.isFresh { return .fresh(entry.answer, freshFor: Double(entry.freshForMilliseconds) / 1000) }
        return .stale(entry.answer)
    }

    /// Stores `answer` with the TTL of its kind, varied by the jitter.
    func set(_ answer: IdentityAnswer, for key: IdentityKey) {
        let cache = ttls.withLock { $0 }
        var ttl = answer == .notFound ? cache.negativeTTL : cache.positiveTTL
        let jitter = min(0.5, max(0, cache.ttlJitter))
        if jitter > 0 { ttl *= Double.random(in: (1 - jitter)...(1 + jitter)) }
        try? redis.set(
            answer, for: key, freshMilliseconds: Int64(ttl * 1000),
            staleMilliseconds: Int64(cache.maxStaleness * 1000))
    }

    /// Takes the fetch lock for `key`, or waits up to lock_wait for the
    /// instance that holds it to store the answer.
    func acquireOrWait(_ key: IdentityKey, counters: IdentityDirectoryCounters) -> LockOutcome {
        let owner = String(UInt64.random(in: 1...UInt64.max), radix: 36)
        let lockMilliseconds = Int64(lockTTL * 1000)
        guard let acquired = try? redis.tryLock(key, owner: owner, milliseconds: lockMilliseconds) else {
            return .proceed
        }
        if acquired { return lockedOrStored(key, owner: owner) }

        counters.lockWaits.increment()
        let deadline = monotonicNanoseconds() + nanoseconds(lockWait)
        while monotonicNanoseconds() < deadline {
            usleep(Self.pollInterval)
            switch get(key) {
            case .fresh(let answer, let freshFor): return .answer(answer, freshFor: freshFor)
            case .stale, .miss: break
            }
            // The holder gave up or failed: take over instead of waiting out the deadline.
            guard let taken = try? redis.tryLock(key, owner: owner, milliseconds: lockMilliseconds) else {
                return .proceed
            }
            if taken { return lockedOrStored(key, owner: owner) }
        }
        return .proceed
    }

    /// Reads the entry again once the lock is held: another instance may have
    /// stored the answer and released its lock between this instance's miss
    /// and its lock, and the provider must not be asked twice for it.
    private func lockedOrStored(_ key: IdentityKey, owner: String) -> LockOutcome {
        let lock = Lock(key: key, owner: owner)
        if case .fresh(let answer, let freshFor) = get(key) {
            release(lock)
            return .answer(answer, freshFor: freshFor)
        }
        return .locked(lock)
    }

    func release(_ lock: Lock) {
        try? redis.unlock(lock.key, owner: lock.owner)
    }
}
