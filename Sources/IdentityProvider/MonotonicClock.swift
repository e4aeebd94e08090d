// Monotonic time in nanoseconds for deadlines, token lifetimes and cache
// entries. Wall-clock jumps (NTP, manual changes) must not expire or revive
// a cached answer.
#if canImport(Glibc)
    import Glibc
#endif

/// A source of monotonic time in nanoseconds. Tests inject their own.
public typealias MonotonicClock = @Sendable () -> UInt64

/// Reads CLOCK_MONOTONIC in nanoseconds.
public func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Converts a duration in seconds to nanoseconds, clamping negative and
/// non-finite values to zero.
func nanoseconds(_ seconds: Double) -> UInt64 {
    guard seconds.isFinite, seconds > 0 else { return 0 }
    guard seconds < 1e9 else { return 1_000_000_000 * 1_000_000_000 }
    return UInt64(seconds * 1e9)
}
