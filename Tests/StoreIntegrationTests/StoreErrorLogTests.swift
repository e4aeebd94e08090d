// The snapshot store's error accounting while PostgreSQL is unreachable:
// every failed attempt is counted in StoreStatus.failures, and the log gets
// one line per error text and window plus one summary with the exact count.
import Locking
import Testing

#if canImport(Glibc)
import Glibc
#endif

import Config
import Log
@testable import Store

/// A monotonic clock that does not advance, so every attempt falls into one rate-limit window.
private final class FrozenClock: Sendable {
    private let seconds = Locked<Double>(500)

    func now() -> Double { seconds.withLock { $0 } }

    func advance(by delta: Double) {
        seconds.withLock { $0 += delta }
    }
}

/// Reads everything queued on a non-blocking pipe and splits it into lines.
private func readLines(_ descriptor: Int32) -> [Substring] {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        bytes += chunk[..<count]
    }
    return String(decoding: bytes, as: UTF8.self).split(separator: "\n")
}

@Test func storeStatusStartsWithoutFailures() {
    #expect(StoreStatus().failures == 0)
}

@Test func unreachableStoreLogsLineAndCount() throws {
    var descriptors: [Int32] = [0, 0]
    try #require(pipe(&descriptors) == 0)
    defer {
        close(descriptors[0])
        close(descriptors[1])
    }
    try #require(fcntl(descriptors[0], F_SETFL, O_NONBLOCK) == 0)
    let clock = FrozenClock()
    let logger = Logger(fileDescriptor: descriptors[1], repeats: LogRepeatLimiter(clock: { clock.now() }))
    var config = DatabaseConfig()
    config.url = "postgresql://admin:hunter22secret@127.0.0.1:1/mailcloak"
    config.maxReconnectDelay = 0.2
    let store = SnapshotStore(config: config, logger: logger)

    store.start()
    let retried = eventually { store.status.failures >= 3 }
    store.stop()
    let failures = store.status.failures
    let during = readLines(descriptors[0]).filter { $0.contains("event=\"store connection failed\"") }
    clock.advance(by: 10)
    logger.flushRepeats()
    let summary = readLines(descriptors[0])

    #expect(retried)
    #expect(during.count == 1)
    #expect(during.first?.contains(" attempt=1") == true)
    #expect(summary.count == 1)
    #expect(summary.first?.contains("event=\"store connection failed\"") == true)
    #expect(summary.first?.hasSuffix(" suppressed=\(failures - 1)") == true)
    #expect(summary.first?.contains("hunter22secret") == false)
}
