// Counters, gauges and histograms updated from several threads at once must
// lose no update.
import Dispatch
import Testing
@testable import Metrics

@Test func primitivesKeepConcurrentUpdates() {
    let counter = Counter()
    let gauge = Gauge()
    let histogram = Histogram(upperBounds: [1, 2])
    let threads = 8
    let updates = 10_000

    DispatchQueue.concurrentPerform(iterations: threads) { thread in
        for index in 0..<updates {
            counter.increment()
            gauge.add(1)
            histogram.observe(Double((thread + index) % 3))
        }
    }
    let snapshot = histogram.snapshot
    var expectedAtMostOne = 0
    var expectedSum = 0.0
    for thread in 0..<threads {
        for index in 0..<updates {
            let value = (thread + index) % 3
            if value <= 1 { expectedAtMostOne += 1 }
            expectedSum += Double(value)
        }
    }

    #expect(counter.value == threads * updates)
    #expect(gauge.value == Double(threads * updates))
    #expect(snapshot.count == threads * updates)
    #expect(snapshot.cumulativeCounts == [expectedAtMostOne, threads * updates])
    #expect(snapshot.sum == expectedSum)
}

@Test func histogramCountsValueOnBoundInBucket() {
    let histogram = Histogram(upperBounds: [0.5, 1])
    histogram.observe(0.5)
    histogram.observe(1)
    histogram.observe(1.5)
    #expect(histogram.snapshot == HistogramSnapshot(upperBounds: [0.5, 1], cumulativeCounts: [1, 2], count: 3, sum: 3))
}
