// Redis errors found in a reply after the call returned, such as a key of the
// wrong type. Each one counts in the pool's error total, which
// mailcloak_redis_errors_total exports. The log gets one line per kind and
// window, plus one summary with the exact count.
import Log
import Model
import RedisCache
import Locking
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A monotonic clock that moves only when the test advances it.
private final class SteppedClock: Sendable {
    private let seconds = Locked<Double>(100)

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

@Test func wrongTypeRepliesCountAndLogOnce() throws {
    let server = try RedisTestServer()
    defer { server.stop() }
    var descriptors: [Int32] = [0, 0]
    try #require(pipe(&descriptors) == 0)
    defer {
        close(descriptors[0])
        close(descriptors[1])
    }
    try #require(fcntl(descriptors[0], F_SETFL, O_NONBLOCK) == 0)
    let clock = SteppedClock()
    let logger = Logger(fileDescriptor: descriptors[1], repeats: LogRepeatLimiter(clock: { clock.now() }))
    let pool = RedisPool(endpoint: server.endpoint, size: 1, maxReconnectDelay: 0.2, logger: logger)
    let cache = RedisIdentityCache(pool: pool, keyPrefix: "errorlog")
    let key = IdentityKey.email("carol@example.com")
    _ = try pool.command(["LPUSH", cache.entryKey(key), "carol-secret-value"])

    var failures = 0
    for _ in 0..<5 {
        do {
            _ = try cache.get(key)
        } catch {
            failures += 1
        }
    }
    let during = readLines(descriptors[0])
    clock.advance(by: 10)
    logger.flushRepeats()
    let after = readLines(descriptors[0])

    #expect(failures == 5)
    #expect(pool.errorCount == 5)
    #expect(during.count == 1)
    #expect(during.first?.contains("event=\"redis command failed\"") == true)
    #expect(during.first?.contains("reason=\"unexpected reply\"") == true)
    #expect(during.first?.contains("carol-secret-value") == false)
    #expect(after.count == 1)
    #expect(after.first?.hasSuffix("event=\"redis command failed\" reason=\"unexpected reply\" suppressed=4") == true)
}
