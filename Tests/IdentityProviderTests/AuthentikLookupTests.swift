// Lookups against the Authentik development directory: exact filters,
// users stored with capitals, inactive users, paging, failures, and the
// shared Redis cache in front of Authentik.
import Config
import Model
import TestSupport
import Testing

@testable import IdentityProvider

@Suite final class AuthentikLookupTests {
    let server: AuthentikDevServer

    init() throws {
        server = try AuthentikDevServer()
    }

    func directory(pageSize: Int = 20, token: String = "demo-api-token") throws -> CachedIdentityDirectory {
        try makeIdentityDirectory(config: server.identityConfig(token: token, pageSize: pageSize), logger: quietLogger)
    }

    func user(_ name: String, _ email: String?) -> IdentityAnswer {
        .found(IdentityUser(username: name, email: email.flatMap { MailAddress($0) }))
    }

    @Test func emailLookupFindsUser() throws {
        #expect(try directory().lookup(.email("alice@example.com")) == user("alice", "alice@example.com"))
        #expect(try server.stats().users == 1)
    }

    @Test func usernameLookupFindsUser() throws {
        #expect(try directory().lookup(.username("bob")) == user("bob", "bob@example.com"))
    }

    @Test func capitalizedEmailIsFound() throws {
        let answer = try directory().lookup(.email("dave.capitals@example.com"))
        #expect(answer == user("dave", "dave.capitals@example.com"))
        #expect(try server.stats().users == 2)
    }

    @Test func capitalizedUsernameIsFound() throws {
        #expect(try directory().lookup(.username("dave")) == user("dave", "dave.capitals@example.com"))
    }

    @Test func inactiveUserIsNotFound() throws {
        #expect(try directory().lookup(.email("carol@example.com")) == .notFound)
    }

    @Test func substringDoesNotMatch() throws {
        let directory = try directory()
        #expect(try directory.lookup(.email("lice@example.com")) == .notFound)
        #expect(try directory.lookup(.username("ali")) == .notFound)
    }

    @Test func unknownEmailCostsTwoQueries() throws {
        #expect(try directory().lookup(.email("nobody@example.com")) == .notFound)
        #expect(try server.stats().users == 2)
    }

    @Test func searchPagesAreRead() throws {
        var users: [String] = []
        for index in 0..<7 {
            users.append(#"{"username": "Page\#(index)", "email": "Shared.Page@Example.com"}"#)
        }
        try server.changeUsers(#"{"upsert": [\#(users.joined(separator: ","))]}"#)
        // Seven matches, two per page: the fallback search reads four pages.
        let answer = try directory(pageSize: 2).lookup(.email("shared.page@example.com"))
        #expect(answer == user("page0", "shared.page@example.com"))
        #expect(try server.stats().users == 5)
    }

    @Test func invalidTokenIsUnavailable() throws {
        let error = #expect(throws: IdentityLookupError.self) {
            try self.directory(token: "wrong").lookup(.username("alice"))
        }
        guard case .unavailable(let reason) = error else {
            Issue.record("expected unavailable, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("HTTP 403"))
    }

    @Test(arguments: ["500", "html", "nonjson", "close"])
    func providerFailureIsUnavailable(_ mode: String) throws {
        let directory = try directory()
        try server.configure(#"{"failure": "\#(mode)", "failure_count": 1}"#)
        #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("alice")) }
        #expect(directory.cachedAnswer(for: .username("alice")) == nil)
    }

    @Test func checkReportsUsers() throws {
        guard case .success(let text) = try directory().checkProvider() else {
            Issue.record("check failed")
            return
        }
        #expect(text.hasPrefix("Authentik user query returned"))
    }

    @Test func redisSharesAuthentikAnswers() throws {
        let redis = try RedisTestServer()
        defer { redis.stop() }
        var config = server.identityConfig()
        config.redis.host = "127.0.0.1"
        config.redis.port = redis.port
        let instances = try (0..<3).map { _ in try makeIdentityDirectory(config: config, logger: quietLogger) }
        let keys: [IdentityKey] = [.email("alice@example.com"), .username("bob"), .username("alice")]
        let failures = Collector<IdentityKey>()
        runOnThreads(30) { index in
            for key in keys where (try? instances[index % 3].lookup(key)) == nil {
                failures.append(key)
            }
        }
        #expect(failures.values.isEmpty)
        #expect(try server.stats().users == keys.count)
    }

    @Test func missingTokenIsConfigurationError() {
        var config = server.identityConfig()
        config.authentik.token = ""
        #expect(throws: IdentityProviderError.self) { try makeIdentityDirectory(config: config, logger: quietLogger) }
    }
}
