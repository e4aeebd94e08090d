// The IdentityDirectory the daemon uses. Lookup path:
//   L1 (IdentityCache, this process; the only level reactor threads read)
//   -> L2 (RedisIdentityCache, shared by every instance; optional)
//   -> provider (Keycloak or Authentik), behind a circuit breaker.
// Concurrent misses for one key coalesce into one call per process
// (SingleFlight) and, through a short Redis lock, mostly one per cluster.
// A Redis failure never fails a lookup: it only skips the shared cache.
// While the provider fails, answers up to max_staleness past their TTL are
// served from L1 or L2 before the lookup fails.
import Config
import Log
import Model
import RedisCache

/// Identity lookups through the caches, then the identity provider.
/// Thread-safe. `cachedAnswer(for:)` never blocks on I/O; `lookup(_:)`
/// blocks and belongs on a worker thread.
public final class CachedIdentityDirectory: IdentityDirectory {
    /// The in-process cache of answers.
    public let cache: IdentityCache
    let backend: any IdentityBackend
    let shared: SharedIdentityCache?
    private let flights: SingleFlight<IdentityKey, IdentityAnswer>
    private let breaker: CircuitBreaker
    private let health = ProviderHealth()
    private let counters = IdentityDirectoryCounters()
    private let config: IdentityConfig
    private let logger: Logger
    private let subscriber: RedisFlushSubscriber?

    init(
        config: IdentityConfig, backend: any IdentityBackend, cache: IdentityCache, shared: SharedIdentityCache?,
        logger: Logger, clock: @escaping MonotonicClock = monotonicNanoseconds
    ) {
        self.config = config
        self.backend = backend
        self.cache = cache
        self.shared = shared
        self.logger = logger
        breaker = CircuitBreaker(
            failureThreshold: config.breaker.failureThreshold, initialBackoff: config.breaker.initialBackoff,
            maxBackoff: config.breaker.maxBackoff, logger: logger, clock: clock)
        let lockWait = shared == nil ? 0 : config.redis.lockWait
        flights = SingleFlight(waitLimitSeconds: backend.maxLookupSeconds + lockWait + 1)
        if let shared {
            let redis = config.redis
            let cache = cache
            let counters = counters
            subscriber = RedisFlushSubscriber(
                endpoint: shared.redis.pool.endpoint, channel: shared.redis.flushChannel,
                maxReconnectDelay: redis.maxReconnectDelay, logger: logger
            ) { event in
                Self.apply(event, to: cache, logger: logger)
                counters.flushesApplied.increment()
            }
        } else {
            subscriber = nil
        }
    }

    /// Starts the flush subscriber thread, when Redis is configured.
    public func start() {
        subscriber?.start()
    }

    /// Stops the flush subscriber and closes the Redis connections.
    public func stop() {
        subscriber?.stop()
        shared?.redis.pool.close()
    }

    /// Applies the cache settings of a reloaded configuration: the in-process bound
    /// and TTLs, and the TTLs of the entries this instance writes to Redis.
    public func reconfigureCache(_ config: IdentityCacheConfig) {
        cache.reconfigure(
            maxEntries: config.maxEntries, positiveTTL: config.positiveTTL, negativeTTL: config.negativeTTL,
            staleWindow: config.maxStaleness, jitter: config.ttlJitter)
        shared?.reconfigure(config)
    }

    /// Whether the flush subscriber is subscribed; false without Redis.
    public var isSubscribedToFlushes: Bool { subscriber?.isSubscribed ?? false }

    /// The provider's name: `keycloak` or `authentik`.
    public var providerName: String { backend.name }

    /// Counters since start. Never blocks on I/O.
    public var stats: IdentityDirectoryStats {
        var stats = counters.snapshot()
        stats.breakerState = breaker.currentState
        stats.redisErrors = shared?.redis.pool.errorCount ?? 0
        return stats
    }

    /// The Keycloak token provider, for tests; nil for other providers.
    var tokens: KeycloakTokenProvider? { (backend as? KeycloakBackend)?.tokens }

    /// Access tokens obtained from the provider since start.
    public var tokensObtained: Int { backend.tokensObtained }

    public func cachedAnswer(for key: IdentityKey) -> IdentityAnswer? {
        let answer = cache.answer(for: key)
        if answer == nil { counters.l1Misses.increment() } else { counters.l1Hits.increment() }
        return answer
    }

    public func lookup(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer {
        if let answer = cachedAnswer(for: key) { return answer }
        return try flights.run(key) { () throws(IdentityLookupError) -> IdentityAnswer in
            // A call for this key may have finished between the miss above
            // and the start of this one.
            if let answer = cache.answer(for: key) { return answer }
            return try fetch(key)
        }
    }

    /// Runs one miss through L2, the cross-instance lock and the provider.
    private func fetch(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer {
        var stale: IdentityAnswer?
        if let shared {
            switch shared.get(key) {
            case .fresh(let answer, let freshFor):
                counters.l2Hits.increment()
                cache.store(answer, for: key, freshFor: freshFor)
                return answer
            case .stale(let answer):
                stale = answer
                counters.l2Misses.increment()
            case .miss:
                counters.l2Misses.increment()
            }
        }
        stale = stale ?? cache.staleAnswer(for: key)?.answer

        guard breaker.allowCall() else {
            return try answerWithoutProvider(key, stale: stale, reason: "circuit breaker open", breakerOpen: true)
        }
        var lock: SharedIdentityCache.Lock?
        if let shared {
            switch shared.acquireOrWait(key, counters: counters) {
            case .answer(let answer, let freshFor):
                // Another instance fetched it. The breaker let this call
                // through without it reaching the provider, so report success.
                breaker.recordSuccess()
                cache.store(answer, for: key, freshFor: freshFor)
                return answer
            case .locked(let held): lock = held
            case .proceed: break
            }
        }
        defer { if let lock { shared?.release(lock) } }
        return try callProvider(key, stale: stale)
    }

    private func callProvider(_ key: IdentityKey, stale: IdentityAnswer?) throws(IdentityLookupError) -> IdentityAnswer
    {
        let started = monotonicNanoseconds()
        do {
            let answer = try backend.lookup(key)
            counters.providerNanoseconds.add(Int(monotonicNanoseconds() - started), ordering: .relaxed)
            if answer == .notFound { counters.providerNotFound.increment() } else { counters.providerFound.increment() }
            breaker.recordSuccess()
            health.recordLookupSuccess()
            cache.store(answer, for: key)
            shared?.set(answer, for: key)
            return answer
        } catch {
            counters.providerNanoseconds.add(Int(monotonicNanoseconds() - started), ordering: .relaxed)
            counters.providerFailures.increment()
            // Every failure reaches the breaker, so that a half-open probe always reports back.
            breaker.recordFailure()
            let reason: String
            switch error {
            case .unavailable(let text): reason = text
            case .overloaded: reason = "overloaded"
            }
            health.recordLookupFailure(reason: reason)
            return try answerWithoutProvider(key, stale: stale, reason: reason, breakerOpen: false)
        }
    }

    /// Returns the stale answer when one is kept, else fails the lookup.
    private func answerWithoutProvider(
        _ key: IdentityKey, stale: IdentityAnswer?, reason: String, breakerOpen: Bool
    ) throws(IdentityLookupError) -> IdentityAnswer {
        if let stale {
            counters.staleAnswers.increment()
            logger.debug("serving a stale identity answer", [(.key, key.description), (.reason, reason)])
            return stale
        }
        if breakerOpen { counters.breakerRejections.increment() }
        throw .unavailable(reason: reason)
    }

    /// Applies one flush event to the in-process cache.
    static func apply(_ event: RedisFlushSubscriber.Event, to cache: IdentityCache, logger: Logger) {
        switch event {
        case .resubscribed:
            // Flushes published while the subscription was down are lost.
            cache.removeAll()
        case .message(let text):
            if text == FlushMessage.all {
                cache.removeAll()
            } else if let key = FlushMessage.key(text) {
                cache.remove(key)
            } else {
                logger.warning("ignoring an unknown identity cache flush message", [(.value, String(text.prefix(80)))])
            }
        }
    }

    /// Runs the provider check, records the result for `readiness`, and
    /// returns it. Blocks: call it off the reactor threads.
    public func checkProvider() -> Result<String, IdentityProviderError> {
        let result = backend.check()
        health.recordCheck(result)
        return result
    }

    /// The last known provider state: the last `checkProvider()` result,
    /// unless a lookup failed since, and `.notChecked` before the first
    /// check. Never blocks on I/O.
    public var readiness: Result<String, IdentityProviderError> {
        health.readiness
    }
}
