// A pthread mutex with a condition variable that waits against the
// monotonic clock. Synchronization.Mutex has no condition variable, and the
// token provider, the handle pool and single-flight need threads to wait for
// a result another thread is fetching.
#if canImport(Glibc)
    import Glibc
#endif

/// A mutex plus a condition variable whose timed waits use CLOCK_MONOTONIC,
/// so that a change of the wall clock neither shortens nor extends a wait.
///
/// The owner keeps its guarded state in its own stored properties and
/// touches them only between `lock()` and `unlock()`.
package final class ConditionLock: @unchecked Sendable {
    // @unchecked: the pthread objects live at stable heap addresses and are
    // thread-safe by contract; nothing else is stored.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    package init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    package func lock() {
        pthread_mutex_lock(mutex)
    }

    package func unlock() {
        pthread_mutex_unlock(mutex)
    }

    /// Runs `body` with the mutex held.
    package func withLock<Result, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Releases the mutex until another thread broadcasts or `deadline`
    /// (monotonic nanoseconds) passes, then takes it again. Call with the
    /// mutex held, and recheck the awaited condition after it returns,
    /// because wake-ups can be spurious.
    /// - Returns: false when the deadline has passed.
    @discardableResult
    package func wait(until deadline: UInt64) -> Bool {
        var time = timespec()
        time.tv_sec = Int(deadline / 1_000_000_000)
        time.tv_nsec = Int(deadline % 1_000_000_000)
        return pthread_cond_timedwait(condition, mutex, &time) != ETIMEDOUT
    }

    /// Wakes every thread that waits on this lock.
    package func broadcast() {
        pthread_cond_broadcast(condition)
    }
}
