// Coalesces concurrent lookups of one key into one provider call: the first
// caller runs it, later callers wait for its result. Scope is this process;
// other instances coalesce on their own.
import Model
import RedisCache

/// Runs at most one call per key at a time and hands its result to every
/// caller that asked for the same key meanwhile. Thread-safe and blocking.
final class SingleFlight<Key: Hashable & Sendable, Value: Sendable>: @unchecked Sendable {
    // @unchecked: `calls` and the `Call` objects in it are read and written
    // only with `lock` held.
    private final class Call {
        var result: Result<Value, IdentityLookupError>?
        var waiters = 0
    }

    private let lock = ConditionLock()
    private var calls: [Key: Call] = [:]
    /// How long a waiter waits for the running call before giving up.
    private let waitLimit: UInt64

    init(waitLimitSeconds: Double) {
        waitLimit = nanoseconds(waitLimitSeconds)
    }

    /// Returns the result of `work` for `key`, running it only when no call
    /// for `key` is in flight, and otherwise waiting for that call.
    /// - Throws: the error of the call, shared by all its waiters, or
    ///   `.unavailable` when the wait limit passes first.
    func run(_ key: Key, _ work: () throws(IdentityLookupError) -> Value) throws(IdentityLookupError) -> Value {
        lock.lock()
        if let call = calls[key] {
            return try wait(for: call)
        }
        let call = Call()
        calls[key] = call
        lock.unlock()

        let result = Result<Value, IdentityLookupError> { () throws(IdentityLookupError) -> Value in try work() }
        lock.withLock {
            call.result = result
            calls[key] = nil
            lock.broadcast()
        }
        return try result.get()
    }

    /// Number of callers waiting for the call on `key`, for tests.
    func waiterCount(for key: Key) -> Int {
        lock.withLock { calls[key]?.waiters ?? 0 }
    }

    /// Waits for `call`. Called with the lock held; returns with it released.
    private func wait(for call: Call) throws(IdentityLookupError) -> Value {
        call.waiters += 1
        let deadline = monotonicNanoseconds() + waitLimit
        while call.result == nil {
            if !lock.wait(until: deadline) && call.result == nil {
                call.waiters -= 1
                lock.unlock()
                throw .unavailable(reason: "timed out waiting for a concurrent lookup of the same key")
            }
        }
        call.waiters -= 1
        let result = call.result!
        lock.unlock()
        return try result.get()
    }
}
