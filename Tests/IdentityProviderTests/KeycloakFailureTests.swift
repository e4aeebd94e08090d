// Provider failures: every one becomes IdentityLookupError.unavailable with
// a readable reason, none is cached, and the next lookup queries the provider again.
import Config
import Model
import Testing

@testable import IdentityProvider

@Suite final class KeycloakFailureTests {
    let server: KeycloakDevServer

    init() throws {
        server = try KeycloakDevServer()
    }

    deinit {
        // Releases a request held by the "hang" failure before stopping.
        try? server.reset()
        server.stop()
    }

    /// Failure mode, expected reason, and the user queries the server counts
    /// for the failed lookup plus the successful one after it. libcurl
    /// resends a request once when a reused connection closes without a
    /// reply, so "close" costs one query more.
    static let failures: [(mode: String, reason: String, queries: Int)] = [
        ("500", "returned HTTP 500 with JSON", 2),
        ("html", "returned HTTP 503 with an HTML page instead of JSON (title: 503 Service Unavailable)", 2),
        ("nonjson", #"returned HTTP 200 with text instead of JSON: "service temporarily unavailable""#, 2),
        ("oversize", "response body exceeds the limit of 1048576 bytes", 2),
        ("close", "failed: transfer failed (curl error 52)", 3),
        ("403", "returned HTTP 403 Forbidden: the service account of client mailcloak lacks", 2),
    ]

    @Test(arguments: failures)
    func failureIsUnavailableNotCached(mode: String, reason: String, queries: Int) throws {
        let directory = try makeIdentityDirectory(config: server.identityConfig(), logger: quietLogger)
        try server.configure(#"{"failure": "\#(mode)"}"#)

        let error = #expect(throws: IdentityLookupError.self) { try directory.lookup(.email("alice@example.com")) }
        guard case .unavailable(let text) = error else {
            Issue.record("expected unavailable, got \(String(describing: error))")
            return
        }
        #expect(text.contains(reason), "reason: \(text)")
        #expect(directory.cachedAnswer(for: .email("alice@example.com")) == nil)

        // Once the provider recovers, the next lookup queries it again.
        try server.configure(#"{"failure": null}"#)
        let answer = try directory.lookup(.email("alice@example.com"))
        #expect(answer == .found(IdentityUser(username: "alice", email: MailAddress("alice@example.com"))))
        #expect(try server.stats().requests("users") == queries)
    }

    @Test func hangingProviderTimesOut() throws {
        let config = server.identityConfig(requestTimeout: 0.5)
        let directory = try makeIdentityDirectory(config: config, logger: quietLogger)
        _ = try directory.lookup(.username("alice"))
        try server.configure(#"{"failure": "hang"}"#)

        let error = #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("bob")) }
        #expect(error == .unavailable(reason: "GET /admin/realms/mail/users failed: request timed out after 500 ms"))
        #expect(directory.cachedAnswer(for: .username("bob")) == nil)
        try server.reset()
        #expect(try directory.lookup(.username("bob")) != .notFound)
    }

    @Test func failingTokenEndpointIsUnavailable() throws {
        try server.configure(#"{"failure": "html", "failure_scope": "token", "failure_status": 502}"#)
        let directory = try makeIdentityDirectory(config: server.identityConfig(), logger: quietLogger)
        let error = #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("alice")) }
        #expect(
            error
                == .unavailable(
                    reason: "token endpoint returned HTTP 502 with an HTML page instead of JSON "
                        + "(title: 503 Service Unavailable)"))
        #expect(try server.stats().requests("users") == 0)
    }

    @Test func refusedConnectionIsUnavailable() throws {
        var config = server.identityConfig()
        config.keycloak.baseURL = "http://127.0.0.1:1"
        let directory = try makeIdentityDirectory(config: config, logger: quietLogger)
        let error = #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("alice")) }
        guard case .unavailable(let reason) = error else {
            Issue.record("expected unavailable, got \(String(describing: error))")
            return
        }
        #expect(reason.hasPrefix("token request failed: transfer failed (curl error 7)"), "reason: \(reason)")
    }

    @Test func fullPageWithoutMatchIsUnavailable() throws {
        // Twenty users whose email contains the key: a server that ignores
        // exact=true returns a full page of them, and the exact match may
        // be on a later page.
        let users = (0..<20).map { #"{"username": "fill\#($0)", "email": "x\#($0)lice@example.com"}"# }
        try server.changeUsers(#"{"upsert": [\#(users.joined(separator: ","))]}"#)
        try server.configure(#"{"exact_supported": false}"#)
        let directory = try makeIdentityDirectory(config: server.identityConfig(), logger: quietLogger)

        let error = #expect(throws: IdentityLookupError.self) { try directory.lookup(.email("lice@example.com")) }
        #expect(
            error
                == .unavailable(
                    reason: "user query returned a full page of 20 users without an exact match; "
                        + "the server seems to ignore exact=true and match substrings"))
        #expect(try directory.lookup(.email("alice@example.com")) != .notFound)
        #expect(try directory.lookup(.email("alice@example.co")) == .notFound)
    }
}
