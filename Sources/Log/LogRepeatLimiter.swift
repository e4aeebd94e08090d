// Rate limiting of repeated log events, so that a flood of one error (failed
// TLS handshakes, a database or Redis outage) writes a few lines instead of
// one per occurrence. Events are grouped by their event text and a short
// context such as the reason. The first event of a group is written at once
// and opens a window. Later events in the window are only counted. When the
// window ends, one summary line carries the count as `suppressed=N`.
//
// NOTE: A window that ends is summarized at the next flush or at the next
// event of its group, whichever comes first. Logger.shared flushes once a
// second, so a summary can come up to one second after its window ends.
#if canImport(Glibc)
import Glibc
#endif
import Locking

/// Counts repeated events by group within fixed windows, and decides which ones are written.
public final class LogRepeatLimiter: Sendable {
    /// A group of events that count as repeats of each other.
    public struct Group: Hashable, Sendable {
        public let event: String
        /// The metadata pair that distinguishes groups of one event, such as the reason.
        public let context: LogContext

        public init(event: String, context: LogContext) {
            self.event = event
            self.context = context
        }
    }

    /// The events of one group that a window held back.
    public struct Summary: Equatable, Sendable {
        public let group: Group
        public let level: LogLevel
        public let suppressed: Int

        public init(group: Group, level: LogLevel, suppressed: Int) {
            self.group = group
            self.level = level
            self.suppressed = suppressed
        }
    }

    /// The outcome of recording one event.
    public struct Decision: Equatable, Sendable {
        /// Whether the event opens a window and is written.
        public let write: Bool
        /// Summaries of ended windows that held events back: the group's previous window, and
        /// windows of other groups removed to make room for a new group.
        public let closed: [Summary]

        public init(write: Bool, closed: [Summary]) {
            self.write = write
            self.closed = closed
        }
    }

    private struct Window {
        var start: Double
        var level: LogLevel
        var suppressed: Int
    }

    /// Length of a window in seconds.
    public let window: Double
    /// Maximum number of groups tracked at once.
    public let maxGroups: Int
    private let clock: @Sendable () -> Double
    private let windows = Locked<[Group: Window]>([:])

    /// - Parameters:
    ///   - window: Seconds during which repeats of a written event are counted and not written.
    ///   - maxGroups: Bound on the groups tracked at once. Events of new groups past it share one
    ///     group per event text, with the context value `(other)`.
    ///   - clock: Monotonic time in seconds.
    public init(
        window: Double = 10, maxGroups: Int = 1024,
        clock: @escaping @Sendable () -> Double = LogRepeatLimiter.monotonicSeconds
    ) {
        precondition(window >= 0 && maxGroups > 0, "window must not be negative and maxGroups must be positive")
        self.window = window
        self.maxGroups = maxGroups
        self.clock = clock
    }

    /// Records one event of `group` at `level`.
    public func record(_ group: Group, level: LogLevel) -> Decision {
        let now = clock()
        return windows.withLock { windows in
            var group = group
            var closed: [Summary] = []
            if windows[group] == nil && windows.count >= maxGroups {
                closed = Self.removeEnded(&windows, now: now, window: window)
                if windows.count >= maxGroups {
                    group = Group(event: group.event, context: LogContext(group.context.key, "(other)"))
                }
            }
            guard let current = windows[group] else {
                windows[group] = Window(start: now, level: level, suppressed: 0)
                return Decision(write: true, closed: closed)
            }
            if now - current.start < window {
                windows[group]?.suppressed += 1
                return Decision(write: false, closed: closed)
            }
            windows[group] = Window(start: now, level: level, suppressed: 0)
            if current.suppressed > 0 {
                closed.append(Summary(group: group, level: current.level, suppressed: current.suppressed))
            }
            return Decision(write: true, closed: closed)
        }
    }

    /// Ends the windows that are over and returns the summaries of those that held events back.
    public func expire() -> [Summary] {
        let now = clock()
        return windows.withLock { windows in
            Self.removeEnded(&windows, now: now, window: window)
        }
    }

    /// Reads CLOCK_MONOTONIC, in seconds.
    public static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// The number of groups tracked now.
    public var groupCount: Int { windows.withLock { $0.count } }

    private static func removeEnded(_ windows: inout [Group: Window], now: Double, window: Double) -> [Summary] {
        var summaries: [Summary] = []
        for (group, current) in windows where now - current.start >= window {
            windows[group] = nil
            if current.suppressed > 0 {
                summaries.append(Summary(group: group, level: current.level, suppressed: current.suppressed))
            }
        }
        return summaries
    }
}

/// One metadata pair that distinguishes groups of one repeated event.
public struct LogContext: Hashable, Sendable {
    public let key: LogKey
    public let value: String

    public init(_ key: LogKey, _ value: String) {
        self.key = key
        self.value = value
    }
}
