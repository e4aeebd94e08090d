// Limits how often one warning is written, so that an identity provider
// outage logs a line every few seconds instead of one per lookup.
import Synchronization

/// Allows one event per interval and counts the ones it drops.
final class LogThrottle: Sendable {
    private let interval: UInt64
    private let clock: MonotonicClock
    /// Time of the last allowed event (nil before the first) and the number
    /// of events suppressed since.
    private let state = Mutex<(last: UInt64?, suppressed: Int)>((nil, 0))

    init(intervalSeconds: Double = 10, clock: @escaping MonotonicClock = monotonicNanoseconds) {
        self.interval = nanoseconds(intervalSeconds)
        self.clock = clock
    }

    /// Returns nil when the event should be dropped; otherwise the number of
    /// events dropped since the last one allowed, for the log line.
    func admit() -> Int? {
        let now = clock()
        return state.withLock { state -> Int? in
            if let last = state.last, now &- last < interval {
                state.suppressed += 1
                return nil
            }
            let suppressed = state.suppressed
            state = (now, 0)
            return suppressed
        }
    }
}
