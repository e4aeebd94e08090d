// A log-linear latency histogram in microseconds, in the manner of
// HdrHistogram: exact below 128 us, then 64 buckets per power of two, so a
// recorded value is known to within 1/64 (1.6%). Fixed size, so recording
// never allocates.

struct LatencyHistogram: Sendable {
    private static let exactLimit: UInt64 = 128
    private static let bucketsPerPowerOfTwo = 64
    private static let bucketCount = 128 + 57 * 64

    private var counts = [UInt64](repeating: 0, count: bucketCount)
    private(set) var count: UInt64 = 0
    private(set) var maxMicroseconds: UInt64 = 0

    mutating func record(microseconds value: UInt64) {
        counts[Self.bucket(for: value)] += 1
        count += 1
        maxMicroseconds = max(maxMicroseconds, value)
    }

    mutating func add(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] += other.counts[index] }
        count += other.count
        maxMicroseconds = max(maxMicroseconds, other.maxMicroseconds)
    }

    /// Returns the latency that `fraction` (0 to 1) of the recorded values do not exceed: the upper
    /// end of its bucket, capped at the exact maximum.
    func percentile(_ fraction: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = max(1, UInt64((fraction * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (index, bucketCount) in counts.enumerated() {
            seen += bucketCount
            if seen >= rank { return min(Self.upperBound(of: index), maxMicroseconds) }
        }
        return maxMicroseconds
    }

    static func bucket(for value: UInt64) -> Int {
        if value < exactLimit { return Int(value) }
        let exponent = 63 - value.leadingZeroBitCount
        let shift = exponent - 6
        let top = Int(value >> UInt64(shift))
        return 128 + (shift - 1) * bucketsPerPowerOfTwo + (top - bucketsPerPowerOfTwo)
    }

    /// Returns the largest value that falls in bucket `index`.
    static func upperBound(of index: Int) -> UInt64 {
        if index < Int(exactLimit) { return UInt64(index) }
        let shift = (index - 128) / bucketsPerPowerOfTwo + 1
        let top = UInt64((index - 128) % bucketsPerPowerOfTwo + bucketsPerPowerOfTwo)
        return ((top + 1) << UInt64(shift)) - 1
    }
}
