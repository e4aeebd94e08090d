// Deterministic sampling of per-request log lines: with rate r, event n
// (counting from 0) is picked when floor((n + 1) × r) > floor(n × r). Over
// any run of events the picked share is r within one event, and the pattern
// is fixed (0.5 picks every second event, 0.1 every tenth), so tests can
// count exact lines.
import Synchronization

/// Picks a fixed fraction of events. It is thread-safe, and the rate can change while events are counted.
public final class LogSampler: Sendable {
    private let rateBits = Atomic<UInt64>(0.0.bitPattern)
    private let events = Atomic<UInt64>(0)

    public init(rate: Double = 0) {
        self.rate = rate
    }

    /// The fraction of events picked, from 0 (none) to 1 (all). Values outside are clamped.
    public var rate: Double {
        get { Double(bitPattern: rateBits.load(ordering: .relaxed)) }
        set { rateBits.store(min(max(newValue, 0), 1).bitPattern, ordering: .relaxed) }
    }

    /// Counts one event and reports whether it is picked. Costs one atomic load when the rate is 0.
    public func pick() -> Bool {
        let rate = self.rate
        if rate <= 0 { return false }
        if rate >= 1 { return true }
        let index = Double(events.add(1, ordering: .relaxed).oldValue)
        return ((index + 1) * rate).rounded(.down) > (index * rate).rounded(.down)
    }
}
