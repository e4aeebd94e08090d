// Provider outages against the Keycloak development directory: the circuit
// breaker opens after consecutive failures and closes after a successful
// probe, and answers past their TTL are served while the provider fails.
import Config
import Model
import Testing

@testable import IdentityProvider

@Suite final class ProviderOutageTests {
    let server: KeycloakDevServer
    let clock = ManualClock()

    init() throws {
        server = try KeycloakDevServer()
    }

    deinit {
        try? server.reset()
        server.stop()
    }

    func directory(threshold: Int = 3, maxStaleness: Double = 600) throws -> CachedIdentityDirectory {
        var config = server.identityConfig()
        config.cache.positiveTTL = 60
        config.cache.negativeTTL = 60
        config.cache.ttlJitter = 0
        config.cache.maxStaleness = maxStaleness
        config.breaker.failureThreshold = threshold
        config.breaker.initialBackoff = 10
        config.breaker.maxBackoff = 100
        return try makeIdentityDirectory(config: config, logger: quietLogger, clock: clock.read)
    }

    static let alice = IdentityAnswer.found(IdentityUser(username: "alice", email: MailAddress("alice@example.com")))

    @Test func breakerOpensAfterThreshold() throws {
        let directory = try directory()
        try server.configure(#"{"failure": "500"}"#)
        for name in ["a", "b", "c"] {
            #expect(throws: IdentityLookupError.self) { try directory.lookup(.username(name)) }
        }
        #expect(directory.stats.breakerState == .open)
        let before = try server.stats().requests("users")

        let error = #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("d")) }
        #expect(error == .unavailable(reason: "circuit breaker open"))
        #expect(try server.stats().requests("users") == before)
        #expect(directory.stats.breakerRejections == 1)
    }

    @Test func breakerClosesAfterProbe() throws {
        let directory = try directory()
        try server.configure(#"{"failure": "500"}"#)
        for name in ["a", "b", "c"] {
            _ = try? directory.lookup(.username(name))
        }
        try server.configure(#"{"failure": null}"#)
        // Still open: the backoff (10 s ±20%) has not passed on the test clock.
        #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("alice")) }

        clock.advance(seconds: 13)
        #expect(try directory.lookup(.username("alice")) == .found(IdentityUser(username: "alice", email: MailAddress("alice@example.com"))))
        #expect(directory.stats.breakerState == .closed)
    }

    @Test func failedProbeDoublesBackoff() throws {
        let directory = try directory()
        try server.configure(#"{"failure": "500"}"#)
        for name in ["a", "b", "c"] {
            _ = try? directory.lookup(.username(name))
        }
        clock.advance(seconds: 13)
        let before = try server.stats().requests("users")
        #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("probe")) }
        #expect(try server.stats().requests("users") == before + 1)
        #expect(directory.stats.breakerState == .open)

        // The second backoff is 20 s ±20%: 13 s later the breaker is still open.
        clock.advance(seconds: 13)
        #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("probe")) }
        #expect(try server.stats().requests("users") == before + 1)
    }

    @Test func staleAnswerServedDuringOutage() throws {
        let directory = try directory()
        #expect(try directory.lookup(.email("alice@example.com")) == Self.alice)
        clock.advance(seconds: 120)
        #expect(directory.cachedAnswer(for: .email("alice@example.com")) == nil)

        try server.configure(#"{"failure": "500"}"#)
        #expect(try directory.lookup(.email("alice@example.com")) == Self.alice)
        #expect(directory.stats.staleAnswers == 1)
    }

    @Test func staleAnswerServedWhileBreakerOpen() throws {
        let directory = try directory()
        _ = try directory.lookup(.email("alice@example.com"))
        clock.advance(seconds: 120)
        try server.configure(#"{"failure": "500"}"#)
        for name in ["a", "b", "c"] {
            _ = try? directory.lookup(.username(name))
        }
        let before = try server.stats().requests("users")
        #expect(try directory.lookup(.email("alice@example.com")) == Self.alice)
        #expect(try server.stats().requests("users") == before)
    }

    @Test func tooOldAnswerIsNotServed() throws {
        let directory = try directory(maxStaleness: 60)
        _ = try directory.lookup(.email("alice@example.com"))
        clock.advance(seconds: 121)
        try server.configure(#"{"failure": "500"}"#)
        #expect(throws: IdentityLookupError.self) { try directory.lookup(.email("alice@example.com")) }
    }

    @Test func statsCountProviderOutcomes() throws {
        let directory = try directory()
        _ = try directory.lookup(.email("alice@example.com"))
        _ = try directory.lookup(.email("nobody@example.com"))
        _ = try directory.lookup(.email("alice@example.com"))
        let stats = directory.stats
        #expect(stats.providerFound == 1)
        #expect(stats.providerNotFound == 1)
        #expect(stats.providerFailures == 0)
        #expect(stats.providerLatencyCount == 2)
        #expect(stats.l1Hits == 1)
        #expect(stats.l1Misses == 2)
    }
}
