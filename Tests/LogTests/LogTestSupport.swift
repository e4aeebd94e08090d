// Helpers for the Log target's tests: a clock the test moves by hand and a
// logger whose lines the test reads back from a pipe.
import Locking
import Testing

#if canImport(Glibc)
import Glibc
#endif

import Log

/// A monotonic clock that moves only when the test advances it.
final class ManualClock: Sendable {
    private let seconds = Locked<Double>(1000)

    func now() -> Double { seconds.withLock { $0 } }

    func advance(by delta: Double) {
        seconds.withLock { $0 += delta }
    }
}

/// A logger that writes into a pipe, and the pipe's read end.
final class CapturedLog {
    let logger: Logger
    private let readDescriptor: Int32
    private let writeDescriptor: Int32

    init(window: Double = 10, maxGroups: Int = 1024, clock: ManualClock) throws {
        var descriptors: [Int32] = [0, 0]
        try #require(pipe(&descriptors) == 0)
        try #require(fcntl(descriptors[0], F_SETFL, O_NONBLOCK) == 0)
        readDescriptor = descriptors[0]
        writeDescriptor = descriptors[1]
        let repeats = LogRepeatLimiter(window: window, maxGroups: maxGroups, clock: { clock.now() })
        logger = Logger(fileDescriptor: writeDescriptor, repeats: repeats)
    }

    deinit {
        close(readDescriptor)
        close(writeDescriptor)
    }

    /// Reads the lines written since the last call, each without its `time=` field.
    func lines() -> [String] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(readDescriptor, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            bytes += chunk[..<count]
        }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map { line in
            String(line.split(separator: " ", maxSplits: 1).last ?? "")
        }
    }
}
