// `mailcloakctl cache flush` against a real redis-server: the built binary
// deletes the shared entries and publishes one flush message per key.
import Foundation
import Model
import RedisCache
import Locking
import TestSupport
import Testing

@Suite(.serialized) final class CacheFlushCommandTests {
    let server: RedisTestServer
    let configPath: String
    let cache: RedisIdentityCache

    init() throws {
        server = try RedisTestServer()
        configPath = NSTemporaryDirectory() + "mailcloak-flush-\(getpid())-\(server.port).yaml"
        let yaml = """
            listeners:
              - name: local
                address: "tcp:127.0.0.1:10027"
            identity:
              redis:
                host: 127.0.0.1
                port: \(server.port)
                key_prefix: flushtest
            """
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        let pool = RedisPool(endpoint: server.endpoint, size: 1, maxReconnectDelay: 0.2, logger: quietLogger)
        cache = RedisIdentityCache(pool: pool, keyPrefix: "flushtest")
    }

    deinit {
        server.stop()
        try? FileManager.default.removeItem(atPath: configPath)
    }

    static let bob = IdentityAnswer.found(IdentityUser(username: "bob", email: MailAddress("bob@example.com")))

    /// Runs mailcloakctl from the build folder; returns its exit status and standard output.
    func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("mailcloakctl")
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func store(_ answer: IdentityAnswer, _ key: IdentityKey) throws {
        try cache.set(answer, for: key, freshMilliseconds: 60_000, staleMilliseconds: 0)
    }

    @Test func flushUserDeletesBothKeys() throws {
        try store(Self.bob, .username("bob"))
        try store(Self.bob, .email("bob@example.com"))
        try store(.notFound, .username("alice"))
        let received = Locked<[String]>([])
        let subscriber = RedisFlushSubscriber(
            endpoint: server.endpoint, channel: cache.flushChannel, maxReconnectDelay: 0.2, logger: quietLogger
        ) { event in
            if case .message(let text) = event { received.withLock { $0.append(text) } }
        }
        subscriber.start()
        defer { subscriber.stop() }
        #expect(waitUntil { subscriber.isSubscribed })

        let result = try run(["--config", configPath, "cache", "flush", "--user", "Bob"])
        #expect(result.status == 0)
        #expect(result.output == "deleted 2 shared entries; 1 instances notified\n")
        #expect(try cache.get(.username("bob")) == nil)
        #expect(try cache.get(.email("bob@example.com")) == nil)
        #expect(try cache.get(.username("alice")) != nil)
        #expect(waitUntil { received.withLock { $0 } == ["username:bob", "email:bob@example.com"] })
    }

    @Test func flushAddressDeletesOneKey() throws {
        try store(Self.bob, .email("bob@example.com"))
        try store(Self.bob, .username("bob"))
        let result = try run(["--config", configPath, "cache", "flush", "--address", "Bob@Example.com"])
        #expect(result.status == 0)
        #expect(try cache.get(.email("bob@example.com")) == nil)
        #expect(try cache.get(.username("bob")) != nil)
    }

    @Test func flushAllDeletesEveryKey() throws {
        try store(Self.bob, .email("bob@example.com"))
        try store(.notFound, .username("alice"))
        let result = try run(["--config", configPath, "--json", "cache", "flush"])
        #expect(result.status == 0)
        #expect(result.output.contains(#""deleted":2"#))
        #expect(try cache.get(.username("alice")) == nil)
    }

    @Test func userAndAddressTogetherIsUsageError() throws {
        let result = try run(["--config", configPath, "cache", "flush", "--user", "a", "--address", "a@b.c"])
        #expect(result.status == 2)
    }

    @Test func flushWithoutConfigIsUsageError() throws {
        #expect(try run(["cache", "flush"]).status == 2)
    }
}
