// The three instruments that code on hot paths updates: a counter, a gauge
// and a histogram. Each update is one relaxed atomic operation (a histogram
// observation is two adds and one compare-and-swap loop), so reactor threads
// can count without taking a lock. Readers see values that may lag an update
// in flight by one step, which a scrape tolerates.
import Synchronization

/// A value that only goes up, such as the number of replies sent.
public final class Counter: Sendable {
    private let storage = Atomic<Int>(0)

    public init() {}

    /// Adds `amount` (1 by default); callable from any thread.
    @inline(__always)
    public func increment(by amount: Int = 1) {
        storage.add(amount, ordering: .relaxed)
    }

    /// The current count.
    public var value: Int { storage.load(ordering: .relaxed) }
}

/// A value that goes up and down, such as open connections.
public final class Gauge: Sendable {
    /// The `Double`'s bit pattern, because there is no atomic `Double`.
    private let bits = Atomic<UInt64>(0)

    public init() {}

    /// Replaces the value; callable from any thread.
    public func set(_ value: Double) {
        bits.store(value.bitPattern, ordering: .relaxed)
    }

    /// Adds `delta` (negative to subtract); callable from any thread.
    public func add(_ delta: Double) {
        var current = bits.load(ordering: .relaxed)
        while true {
            let next = (Double(bitPattern: current) + delta).bitPattern
            let (exchanged, original) = bits.compareExchange(
                expected: current, desired: next, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// The current value.
    public var value: Double { Double(bitPattern: bits.load(ordering: .relaxed)) }
}

/// Observations sorted into buckets with fixed upper bounds, plus their sum and count.
///
/// `@unchecked Sendable`: the bucket counters are atomics in a buffer that is
/// allocated once in `init`, never resized, and freed in `deinit`.
public final class Histogram: @unchecked Sendable {
    /// Upper bounds of the buckets, ascending; the `+Inf` bucket is implicit.
    public let upperBounds: [Double]
    private let buckets: UnsafeMutablePointer<Atomic<Int>>
    private let observations = Atomic<Int>(0)
    private let sumBits = Atomic<UInt64>(0)

    /// Creates a histogram with the given finite, strictly ascending upper bounds.
    public init(upperBounds: [Double]) {
        precondition(upperBounds.allSatisfy(\.isFinite), "histogram bounds must be finite")
        precondition(zip(upperBounds, upperBounds.dropFirst()).allSatisfy { $0 < $1 },
                     "histogram bounds must ascend strictly")
        self.upperBounds = upperBounds
        buckets = .allocate(capacity: max(upperBounds.count, 1))
        for index in 0..<max(upperBounds.count, 1) {
            (buckets + index).initialize(to: Atomic<Int>(0))
        }
    }

    deinit {
        buckets.deinitialize(count: max(upperBounds.count, 1))
        buckets.deallocate()
    }

    /// Records one observation; callable from any thread.
    public func observe(_ value: Double) {
        // Only the first bucket that contains the value is counted, and rendering makes the counts cumulative.
        if let index = upperBounds.firstIndex(where: { value <= $0 }) {
            buckets[index].add(1, ordering: .relaxed)
        }
        observations.add(1, ordering: .relaxed)
        var current = sumBits.load(ordering: .relaxed)
        while true {
            let next = (Double(bitPattern: current) + value).bitPattern
            let (exchanged, original) = sumBits.compareExchange(
                expected: current, desired: next, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// Cumulative counts per upper bound, then the total count (the `+Inf` bucket), and the sum.
    public var snapshot: HistogramSnapshot {
        var cumulative: [Int] = []
        var running = 0
        for index in upperBounds.indices {
            running += buckets[index].load(ordering: .relaxed)
            cumulative.append(running)
        }
        // The count is read after the buckets, so it is never below the last bucket.
        let count = max(observations.load(ordering: .relaxed), running)
        return HistogramSnapshot(
            upperBounds: upperBounds, cumulativeCounts: cumulative, count: count,
            sum: Double(bitPattern: sumBits.load(ordering: .relaxed)))
    }
}

/// A histogram's values at one moment.
public struct HistogramSnapshot: Sendable, Equatable {
    public var upperBounds: [Double]
    /// Observations at or below each upper bound.
    public var cumulativeCounts: [Int]
    public var count: Int
    public var sum: Double

    public init(upperBounds: [Double], cumulativeCounts: [Int], count: Int, sum: Double) {
        self.upperBounds = upperBounds
        self.cumulativeCounts = cumulativeCounts
        self.count = count
        self.sum = sum
    }
}
