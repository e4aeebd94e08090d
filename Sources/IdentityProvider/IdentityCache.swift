// The in-process cache of identity answers (L1): a sharded LRU with one
// TTL for found and one for notFound answers. Reactor threads read it at
// high rate, so each shard has its own mutex and a read never blocks on I/O.
// Errors are never stored: the API takes answers only. An entry outlives its
// TTL by the stale window, during which only `staleAnswer(for:)` returns it.
import Model
import Locking

/// A thread-safe, size-bounded LRU cache of identity answers with expiry.
///
/// The cache is split into shards by key hash, each with its own mutex, so
/// concurrent readers rarely wait on each other. The bound is exact: the
/// shard capacities add up to `maxEntries`. LRU order is kept per shard, so
/// an eviction removes the least recently used entry of the key's shard.
public final class IdentityCache: Sendable {
    /// A stored answer and the monotonic time at which it goes stale.
    struct Entry: Sendable {
        var answer: IdentityAnswer
        var freshUntil: UInt64
    }

    private final class Shard: Sendable {
        let store: Locked<LRUStore<IdentityKey, Entry>>

        init(capacity: Int) {
            store = Locked(LRUStore(capacity: capacity))
        }
    }

    /// The TTLs and bound in force; a reload replaces them.
    private struct Settings: Sendable {
        var maxEntries: Int
        var positiveTTL: UInt64
        var negativeTTL: UInt64
        var staleWindow: UInt64
        var jitter: Double
    }

    private let shards: [Shard]
    private let settings: Locked<Settings>
    private let clock: MonotonicClock

    /// Upper bound on stored entries.
    public var maxEntries: Int { settings.withLock { $0.maxEntries } }

    /// Creates an empty cache.
    /// - Parameters:
    ///   - maxEntries: bound on entries; 0 disables the cache.
    ///   - positiveTTL: seconds a found answer is served; 0 stores none.
    ///   - negativeTTL: seconds a notFound answer is served; 0 stores none.
    ///   - staleWindow: seconds an entry is kept past its TTL for `staleAnswer(for:)`.
    ///   - jitter: fraction (0 to 0.5) by which each TTL is varied at random.
    ///   - shardCount: number of independently locked shards, capped at
    ///     `maxEntries` so that every shard holds at least one entry.
    ///   - clock: monotonic nanoseconds; tests pass their own.
    public init(
        maxEntries: Int, positiveTTL: Double, negativeTTL: Double, staleWindow: Double = 0, jitter: Double = 0,
        shardCount: Int = 16, clock: @escaping MonotonicClock = monotonicNanoseconds
    ) {
        let maxEntries = max(0, maxEntries)
        let capacities = Self.shardCapacities(maxEntries: maxEntries, shardCount: max(1, min(shardCount, maxEntries)))
        shards = capacities.map { Shard(capacity: $0) }
        settings = Locked(Settings(
            maxEntries: maxEntries, positiveTTL: nanoseconds(positiveTTL), negativeTTL: nanoseconds(negativeTTL),
            staleWindow: nanoseconds(staleWindow), jitter: min(0.5, max(0, jitter))))
        self.clock = clock
    }

    /// Applies new TTLs and a new bound, as a configuration reload does. Entries already
    /// stored keep the expiry they were given; a smaller bound evicts the least recently
    /// used entries of each shard at once. The shard count stays what it was at start.
    public func reconfigure(
        maxEntries: Int, positiveTTL: Double, negativeTTL: Double, staleWindow: Double, jitter: Double
    ) {
        let maxEntries = max(0, maxEntries)
        settings.withLock {
            $0 = Settings(
                maxEntries: maxEntries, positiveTTL: nanoseconds(positiveTTL), negativeTTL: nanoseconds(negativeTTL),
                staleWindow: nanoseconds(staleWindow), jitter: min(0.5, max(0, jitter)))
        }
        let capacities = Self.shardCapacities(maxEntries: maxEntries, shardCount: shards.count)
        for (shard, capacity) in zip(shards, capacities) {
            shard.store.withLock { $0.resize(to: capacity) }
        }
    }

    /// Splits `maxEntries` over `shardCount` shards so that the capacities add up to it exactly.
    private static func shardCapacities(maxEntries: Int, shardCount: Int) -> [Int] {
        let base = maxEntries / shardCount
        let remainder = maxEntries % shardCount
        return (0..<shardCount).map { base + ($0 < remainder ? 1 : 0) }
    }

    /// Returns the fresh answer for `key`, or nil on a miss or an expired entry.
    public func answer(for key: IdentityKey) -> IdentityAnswer? {
        let now = clock()
        guard let entry = shard(for: key).store.withLock({ $0.value(for: key, now: now) }) else { return nil }
        return now < entry.freshUntil ? entry.answer : nil
    }

    /// Returns the answer for `key` whether fresh or stale, or nil when none
    /// is kept; `age` is how long past its TTL it is (0 when fresh), in seconds.
    public func staleAnswer(for key: IdentityKey) -> (answer: IdentityAnswer, age: Double)? {
        let now = clock()
        guard let entry = shard(for: key).store.withLock({ $0.value(for: key, now: now) }) else { return nil }
        let age = now > entry.freshUntil ? Double(now - entry.freshUntil) / 1e9 : 0
        return (entry.answer, age)
    }

    /// Stores `answer` for `key` with the TTL of its kind, varied by the
    /// jitter, or with `freshFor` seconds when that is shorter.
    public func store(_ answer: IdentityAnswer, for key: IdentityKey, freshFor: Double? = nil) {
        let current = settings.withLock { $0 }
        var ttl: UInt64
        switch answer {
        case .found: ttl = current.positiveTTL
        case .notFound: ttl = current.negativeTTL
        }
        guard ttl > 0 else { return }
        let jitter = current.jitter
        if jitter > 0 { ttl = UInt64(Double(ttl) * Double.random(in: (1 - jitter)...(1 + jitter))) }
        if let freshFor { ttl = min(ttl, nanoseconds(freshFor)) }
        let freshUntil = clock() &+ ttl
        let entry = Entry(answer: answer, freshUntil: freshUntil)
        shard(for: key).store.withLock { $0.set(entry, for: key, expiresAt: freshUntil &+ current.staleWindow) }
    }

    /// Removes the entry for `key`, if any.
    public func remove(_ key: IdentityKey) {
        shard(for: key).store.withLock { _ = $0.removeValue(for: key) }
    }

    /// Removes every entry.
    public func removeAll() {
        for shard in shards {
            shard.store.withLock { $0.removeAll() }
        }
    }

    /// Number of stored entries, expired ones not yet removed included.
    public var count: Int {
        shards.reduce(0) { total, shard in total + shard.store.withLock { $0.count } }
    }

    /// Returns the keys of the shard that contains `key`, most recently used first.
    func keysByRecency(inShardOf key: IdentityKey) -> [IdentityKey] {
        shard(for: key).store.withLock { $0.keysByRecency }
    }

    private func shard(for key: IdentityKey) -> Shard {
        let hash = UInt(bitPattern: key.hashValue)
        return shards[Int(hash % UInt(shards.count))]
    }
}
