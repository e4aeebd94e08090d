// The Redis client parts against a real redis-server: the record format,
// connection errors, AUTH and SELECT, pool backoff, the fetch lock and
// the flush subscriber.
import Log
import Model
import RedisCache
import Locking
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

let quietLogger = Logger(fileDescriptor: open("/dev/null", O_WRONLY | O_CLOEXEC))

/// Polls `condition` every 5 ms until it is true or `seconds` pass.
func waitUntil(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    for _ in 0..<Int(seconds * 200) {
        if condition() { return true }
        usleep(5000)
    }
    return condition()
}

@Suite struct IdentityRecordTests {
    static let bob = IdentityAnswer.found(IdentityUser(username: "bob", email: MailAddress("bob@example.com")))

    @Test func foundRecordRoundTrips() {
        let text = IdentityRecord.encode(Self.bob, staleMilliseconds: 5000)
        #expect(text == "F\t5000\tbob@example.com\tbob")
        #expect(IdentityRecord.decode(text)?.answer == Self.bob)
        #expect(IdentityRecord.decode(text)?.staleMilliseconds == 5000)
    }

    @Test func userWithoutEmailRoundTrips() {
        let answer = IdentityAnswer.found(IdentityUser(username: "svc", email: nil))
        #expect(IdentityRecord.decode(IdentityRecord.encode(answer, staleMilliseconds: 0))?.answer == answer)
    }

    @Test func notFoundRecordRoundTrips() {
        #expect(IdentityRecord.encode(.notFound, staleMilliseconds: 7) == "N\t7")
        #expect(IdentityRecord.decode("N\t7")?.answer == .notFound)
    }

    @Test(arguments: ["", "X\t1", "N", "N\t-1", "N\tx", "F\t1\tbob@example.com", "F\t1\tnot an address\tbob", "F\t1\t\t"])
    func malformedRecordIsRejected(_ text: String) {
        #expect(IdentityRecord.decode(text) == nil)
    }
}

@Suite(.serialized) final class RedisClientTests {
    let server: RedisTestServer

    init() throws {
        server = try RedisTestServer()
    }

    deinit {
        server.stop()
    }

    func cache(prefix: String = "t") -> RedisIdentityCache {
        let pool = RedisPool(endpoint: server.endpoint, size: 2, maxReconnectDelay: 0.2, logger: quietLogger)
        return RedisIdentityCache(pool: pool, keyPrefix: prefix)
    }

    @Test func refusedConnectionFailsFast() {
        var endpoint = server.endpoint
        server.kill()
        endpoint.connectTimeout = 0.2
        #expect(throws: RedisError.self) { try RedisConnection(endpoint) }
    }

    @Test func poolBacksOffAfterFailure() throws {
        let cache = cache()
        server.kill()
        #expect(throws: RedisError.self) { try cache.get(.username("a")) }
        let error = #expect(throws: RedisError.self) { try cache.get(.username("a")) }
        #expect(error == .backingOff)
        #expect(cache.pool.isDown)
        #expect(cache.pool.errorCount == 2)
    }

    @Test func poolRecoversAfterRestart() throws {
        let cache = cache()
        server.kill()
        _ = try? cache.get(.username("a"))
        try server.start()
        #expect(waitUntil { (try? cache.get(.username("a"))) != nil || !cache.pool.isDown })
        #expect(!cache.pool.isDown)
    }

    @Test func freshAndStaleTimesComeFromTTL() throws {
        let cache = cache()
        try cache.set(.notFound, for: .email("x@example.com"), freshMilliseconds: 60_000, staleMilliseconds: 30_000)
        let entry = try #require(try cache.get(.email("x@example.com")))
        #expect(entry.answer == .notFound)
        #expect(entry.freshForMilliseconds > 59_000)
        #expect(entry.freshForMilliseconds <= 60_000)
    }

    @Test func staleEntryIsNotFresh() throws {
        let cache = cache()
        try cache.set(.notFound, for: .email("y@example.com"), freshMilliseconds: 0, staleMilliseconds: 30_000)
        let entry = try #require(try cache.get(.email("y@example.com")))
        #expect(!entry.isFresh)
    }

    @Test func lockHasOneOwner() throws {
        let cache = cache()
        #expect(try cache.tryLock(.username("k"), owner: "one", milliseconds: 10_000))
        #expect(try !cache.tryLock(.username("k"), owner: "two", milliseconds: 10_000))
        try cache.unlock(.username("k"), owner: "two")
        #expect(try !cache.tryLock(.username("k"), owner: "two", milliseconds: 10_000))
        try cache.unlock(.username("k"), owner: "one")
        #expect(try cache.tryLock(.username("k"), owner: "two", milliseconds: 10_000))
    }

    @Test func deleteAllKeepsOtherPrefixes() throws {
        let mine = cache(prefix: "mine")
        let other = cache(prefix: "other")
        for index in 0..<25 {
            try mine.set(.notFound, for: .username("u\(index)"), freshMilliseconds: 60_000, staleMilliseconds: 0)
        }
        try other.set(.notFound, for: .username("u0"), freshMilliseconds: 60_000, staleMilliseconds: 0)
        #expect(try mine.deleteAll() == 25)
        #expect(try other.get(.username("u0")) != nil)
    }

    @Test func subscriberReceivesFlush() throws {
        let cache = cache()
        let received = Locked<[RedisFlushSubscriber.Event]>([])
        let subscriber = RedisFlushSubscriber(
            endpoint: server.endpoint, channel: cache.flushChannel, maxReconnectDelay: 0.2, logger: quietLogger
        ) { event in received.withLock { $0.append(event) } }
        subscriber.start()
        defer { subscriber.stop() }
        #expect(waitUntil { subscriber.isSubscribed })
        #expect(try cache.publishFlush("username:bob") == 1)
        #expect(waitUntil { received.withLock { $0 } == [.message("username:bob")] })
    }

    @Test func subscriberResubscribesAfterRestart() throws {
        let cache = cache()
        let received = Locked<[RedisFlushSubscriber.Event]>([])
        let subscriber = RedisFlushSubscriber(
            endpoint: server.endpoint, channel: cache.flushChannel, maxReconnectDelay: 0.2, logger: quietLogger
        ) { event in received.withLock { $0.append(event) } }
        subscriber.start()
        defer { subscriber.stop() }
        #expect(waitUntil { subscriber.isSubscribed })
        server.kill()
        #expect(waitUntil { !subscriber.isSubscribed })
        try server.start()
        #expect(waitUntil { received.withLock { $0 } == [.resubscribed] })
    }
}

@Suite final class RedisAuthTests {
    let server: RedisTestServer

    init() throws {
        server = try RedisTestServer(extraArguments: ["--requirepass", "s3cret"])
    }

    deinit {
        server.stop()
    }

    @Test func authAndSelectSucceed() throws {
        var endpoint = server.endpoint
        endpoint.password = "s3cret"
        endpoint.database = 3
        let connection = try RedisConnection(endpoint)
        #expect(try connection.command(["SET", "k", "v"]) == .status("OK"))
        #expect(try connection.command(["CLIENT", "INFO"]).text?.contains("db=3") == true)
    }

    @Test func wrongPasswordIsRejected() {
        var endpoint = server.endpoint
        endpoint.password = "wrong"
        let error = #expect(throws: RedisError.self) { try RedisConnection(endpoint) }
        guard case .rejected(let command, _) = error else {
            Issue.record("expected rejected, got \(String(describing: error))")
            return
        }
        #expect(command == "AUTH")
    }
}

@Suite final class RedisSentinelTests {
    let primary: RedisTestServer
    let sentinel: RedisTestServer

    init() throws {
        primary = try RedisTestServer()
        sentinel = try RedisTestServer(sentinelFor: primary, master: "mc")
    }

    deinit {
        sentinel.stop()
        primary.stop()
    }

    func endpoint(master: String) -> RedisEndpoint {
        var endpoint = RedisEndpoint(host: "", port: 0, connectTimeout: 0.5, commandTimeout: 0.5)
        endpoint.sentinels = [RedisAddress(host: "127.0.0.1", port: 1), RedisAddress(host: "127.0.0.1", port: sentinel.port)]
        endpoint.sentinelMaster = master
        return endpoint
    }

    @Test func sentinelNamesPrimary() throws {
        let connection = try RedisConnection(endpoint(master: "mc"))
        #expect(try connection.command(["SET", "via-sentinel", "1"]) == .status("OK"))
        #expect(try primary.command(["GET", "via-sentinel"]) == .string(Array("1".utf8)))
    }

    @Test func unknownMasterFailsConnect() {
        let error = #expect(throws: RedisError.self) { try RedisConnection(self.endpoint(master: "other")) }
        guard case .connectFailed(let reason) = error else {
            Issue.record("expected connectFailed, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("does not know other"))
    }

    @Test func addressParsesHostAndPort() {
        #expect(RedisAddress("10.0.0.5:26379") == RedisAddress(host: "10.0.0.5", port: 26379))
        #expect(RedisAddress("[::1]:26379") == RedisAddress(host: "::1", port: 26379))
        #expect(RedisAddress("nohost") == nil)
        #expect(RedisAddress(":1") == nil)
    }
}
