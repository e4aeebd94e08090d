// Token handling against the development directory: reuse, renewal before
// expiry, one renewal after a 401, and coalesced token requests.
import Config
import Model
import Testing

@testable import IdentityProvider

@Suite final class KeycloakTokenTests {
    let server: KeycloakDevServer

    init() throws {
        server = try KeycloakDevServer()
    }

    deinit {
        server.stop()
    }

    @Test func tokenReusedAcrossLookups() throws {
        let directory = try makeIdentityDirectory(config: server.identityConfig(), logger: quietLogger)
        for index in 0..<10 {
            _ = try directory.lookup(.username("user\(index)"))
        }
        let stats = try server.stats()
        #expect(stats.tokensIssued == 1)
        #expect(stats.requests("users") == 10)
    }

    @Test func tokenRenewedBeforeExpiry() throws {
        let clock = ManualClock()
        // Lifetime 300 s (the realm's), skew 30 s: renewal from 270 s on.
        let directory = try makeIdentityDirectory(
            config: server.identityConfig(), logger: quietLogger, clock: clock.read)
        _ = try directory.lookup(.username("alice"))
        clock.advance(seconds: 269)
        _ = try directory.lookup(.username("bob"))
        #expect(try server.stats().tokensIssued == 1)
        clock.advance(seconds: 1)
        _ = try directory.lookup(.username("dave"))
        #expect(try server.stats().tokensIssued == 2)
    }

    @Test func shortTokenReusedForHalfLife() throws {
        try server.configure(#"{"token_lifespan": 20}"#)
        let clock = ManualClock()
        let directory = try makeIdentityDirectory(
            config: server.identityConfig(), logger: quietLogger, clock: clock.read)
        _ = try directory.lookup(.username("alice"))
        clock.advance(seconds: 9)
        _ = try directory.lookup(.username("bob"))
        #expect(try server.stats().tokensIssued == 1)
        clock.advance(seconds: 1)
        _ = try directory.lookup(.username("dave"))
        #expect(try server.stats().tokensIssued == 2)
    }

    @Test func rejectedTokenRenewedOnce() throws {
        let directory = try makeIdentityDirectory(config: server.identityConfig(), logger: quietLogger)
        _ = try directory.lookup(.username("alice"))
        try server.revokeTokens()

        #expect(try directory.lookup(.username("bob")) != .notFound)
        let stats = try server.stats()
        #expect(stats.tokensIssued == 2)
        #expect(stats.status("users", "401") == 1)
        #expect(stats.status("users", "200") == 2)
    }

    @Test func repeated401FailsAfterOneRetry() throws {
        let directory = try makeIdentityDirectory(config: server.identityConfig(), logger: quietLogger)
        try server.configure(#"{"failure": "401"}"#)
        #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("alice")) }
        let stats = try server.stats()
        #expect(stats.tokensIssued == 2)
        #expect(stats.requests("users") == 2)
        #expect(directory.cachedAnswer(for: .username("alice")) == nil)
    }

    @Test func wrongSecretIsUnavailable() throws {
        let directory = try makeIdentityDirectory(config: server.identityConfig(secret: "wrong"), logger: quietLogger)
        let error = #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("alice")) }
        guard case .unavailable(let reason) = error else {
            Issue.record("expected unavailable, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("HTTP 401: unauthorized_client"))
        #expect(!reason.contains("wrong"))
        #expect(try server.stats().requests("users") == 0)
    }

    @Test func concurrentFirstLookupsShareToken() throws {
        try server.configure(#"{"latency_ms": 100}"#)
        let directory = try makeIdentityDirectory(config: server.identityConfig(), logger: quietLogger)
        let failures = Collector<String>()
        runOnThreads(20) { index in
            do {
                _ = try directory.lookup(.username("user\(index)"))
            } catch {
                failures.append("\(error)")
            }
        }
        #expect(failures.values == [])
        #expect(try server.stats().tokensIssued == 1)
    }

    @Test func concurrentRejectionsRenewTokenOnce() throws {
        let directory = try makeIdentityDirectory(config: server.identityConfig(), logger: quietLogger)
        _ = try directory.lookup(.username("alice"))
        try server.revokeTokens()
        try server.configure(#"{"latency_ms": 50}"#)
        let failures = Collector<String>()
        runOnThreads(20) { index in
            do {
                _ = try directory.lookup(.username("user\(index)"))
            } catch {
                failures.append("\(error)")
            }
        }
        #expect(failures.values == [])
        #expect(try server.stats().tokensIssued == 2)
    }
}
