// The in-process cache of identity answers (L1): a sharded LRU with one
// TTL for found and one for notFound answers. Reactor threads read it at
// high rate, so each shard has its own mutex and a read never blocks on I/O.
// Errors are never stored: the API takes answers only.
import Model
import Synchronization

/// A thread-safe, size-bounded LRU cache of identity answers with expiry.
///
/// The cache is split into shards by key hash, each with its own mutex, so
/// concurrent readers rarely wait on each other. The bound is exact: the
/// shard capacities add up to `maxEntries`. LRU order is kept per shard, so
/// an eviction removes the least recently used entry of the key's shard.
public final class IdentityCache: Sendable {
    private final class Shard: Sendable {
        let store: Mutex<LRUStore<IdentityKey, IdentityAnswer>>

        init(capacity: Int) {
            store = Mutex(LRUStore(capacity: capacity))
        }
    }

    /// Upper bound on stored entries.
    public let maxEntries: Int
    private let shards: [Shard]
    private let positiveTTL: UInt64
    private let negativeTTL: UInt64
    private let clock: MonotonicClock

    /// Creates an empty cache.
    /// - Parameters:
    ///   - maxEntries: bound on entries; 0 disables the cache.
    ///   - positiveTTL: seconds a found answer is served; 0 stores none.
    ///   - negativeTTL: seconds a notFound answer is served; 0 stores none.
    ///   - shardCount: number of independently locked shards, capped at
    ///     `maxEntries` so that every shard holds at least one entry.
    ///   - clock: monotonic nanoseconds; tests pass their own.
    public init(
        maxEntries: Int, positiveTTL: Double, negativeTTL: Double, shardCount: Int = 16,
        clock: @escaping MonotonicClock = monotonicNanoseconds
    ) {
        self.maxEntries = max(0, maxEntries)
        let count = max(1, min(shardCount, self.maxEntries))
        let base = self.maxEntries / count
        let remainder = self.maxEntries % count
        shards = (0..<count).map { Shard(capacity: base + ($0 < remainder ? 1 : 0)) }
        self.positiveTTL = nanoseconds(positiveTTL)
        self.negativeTTL = nanoseconds(negativeTTL)
        self.clock = clock
    }

    /// Returns the fresh answer for `key`, or nil on a miss or an expired entry.
    public func answer(for key: IdentityKey) -> IdentityAnswer? {
        let now = clock()
        return shard(for: key).store.withLock { $0.value(for: key, now: now) }
    }

    /// Stores `answer` for `key` with the TTL of its kind.
    public func store(_ answer: IdentityAnswer, for key: IdentityKey) {
        let ttl: UInt64
        switch answer {
        case .found: ttl = positiveTTL
        case .notFound: ttl = negativeTTL
        }
        guard ttl > 0 else { return }
        let expiresAt = clock() &+ ttl
        shard(for: key).store.withLock { $0.set(answer, for: key, expiresAt: expiresAt) }
    }

    /// Removes the entry for `key`, if any.
    public func remove(_ key: IdentityKey) {
        shard(for: key).store.withLock { _ = $0.removeValue(for: key) }
    }

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
