// A value guarded by a pthread mutex. It replaces Synchronization.Mutex,
// whose futex-based lock on Linux is invisible to the thread sanitizer: every
// access under it was reported as a race, which hid the real ones.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value that threads read and change only while holding its lock.
///
/// `withLock` runs its body with the lock held and gives it the value in place. The
/// lock is not recursive: calling `withLock` on the same instance from inside the
/// body deadlocks.
public final class Locked<Value>: @unchecked Sendable {
    // @unchecked: every access to `value` happens between pthread_mutex_lock and
    // pthread_mutex_unlock on `mutex`, and `sending` keeps the value's regions apart.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    /// Creates the lock around `initialValue`.
    public init(_ initialValue: sending Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        value = initialValue
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the lock held and returns what it returns.
    public func withLock<Result, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
