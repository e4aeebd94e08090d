// Counters of the identity directory, for the metrics endpoint. Each is an
// atomic, so that reactor threads can count L1 hits without a lock.
import Synchronization

/// A snapshot of the directory's counters since start.
public struct IdentityDirectoryStats: Sendable, Equatable {
    /// Checks of the in-process cache. A request that misses on a reactor
    /// thread and is fetched by a worker counts two misses, because the
    /// worker checks again before it goes further.
    public var l1Hits = 0
    public var l1Misses = 0
    /// Reads of the shared cache; a stale entry and a failed read count as misses.
    public var l2Hits = 0
    public var l2Misses = 0
    /// Provider calls that returned a user.
    public var providerFound = 0
    public var providerNotFound = 0
    public var providerFailures = 0
    /// Sum of provider call durations, in seconds, and their number.
    public var providerLatencySeconds = 0.0
    public var providerLatencyCount = 0
    /// Answers served past their TTL because the provider failed or the breaker was open.
    public var staleAnswers = 0
    /// Lookups failed because the breaker was open and no stale answer was kept.
    public var breakerRejections = 0
    public var breakerState = CircuitBreakerState.closed
    /// Redis calls that failed, backoff refusals included.
    public var redisErrors = 0
    /// Times this instance waited for another instance that held the fetch lock.
    public var lockWaits = 0
    /// Flush messages applied to the in-process cache.
    public var flushesApplied = 0
}

/// The live counters behind `IdentityDirectoryStats`.
final class IdentityDirectoryCounters: Sendable {
    let l1Hits = Atomic<Int>(0)
    let l1Misses = Atomic<Int>(0)
    let l2Hits = Atomic<Int>(0)
    let l2Misses = Atomic<Int>(0)
    let providerFound = Atomic<Int>(0)
    let providerNotFound = Atomic<Int>(0)
    let providerFailures = Atomic<Int>(0)
    let providerNanoseconds = Atomic<Int>(0)
    let staleAnswers = Atomic<Int>(0)
    let breakerRejections = Atomic<Int>(0)
    let redisErrors = Atomic<Int>(0)
    let lockWaits = Atomic<Int>(0)
    let flushesApplied = Atomic<Int>(0)

    func snapshot() -> IdentityDirectoryStats {
        var stats = IdentityDirectoryStats()
        stats.l1Hits = l1Hits.load(ordering: .relaxed)
        stats.l1Misses = l1Misses.load(ordering: .relaxed)
        stats.l2Hits = l2Hits.load(ordering: .relaxed)
        stats.l2Misses = l2Misses.load(ordering: .relaxed)
        stats.providerFound = providerFound.load(ordering: .relaxed)
        stats.providerNotFound = providerNotFound.load(ordering: .relaxed)
        stats.providerFailures = providerFailures.load(ordering: .relaxed)
        stats.providerLatencySeconds = Double(providerNanoseconds.load(ordering: .relaxed)) / 1e9
        stats.providerLatencyCount = stats.providerFound + stats.providerNotFound + stats.providerFailures
        stats.staleAnswers = staleAnswers.load(ordering: .relaxed)
        stats.breakerRejections = breakerRejections.load(ordering: .relaxed)
        stats.redisErrors = redisErrors.load(ordering: .relaxed)
        stats.lockWaits = lockWaits.load(ordering: .relaxed)
        stats.flushesApplied = flushesApplied.load(ordering: .relaxed)
        return stats
    }
}

extension Atomic where Value == Int {
    func increment() { add(1, ordering: .relaxed) }
}
