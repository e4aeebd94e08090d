// Lookups against the development directory: exact matching, encoding,
// disabled users, unverified emails and the answer cache.
import Config
import Foundation
import Model
import Testing

@testable import IdentityProvider

@Suite final class KeycloakLookupTests {
    let server: KeycloakDevServer

    init() throws {
        server = try KeycloakDevServer()
    }

    deinit {
        server.stop()
    }

    func directory(requireEmailVerified: Bool = false) throws -> CachedIdentityDirectory {
        var config = server.identityConfig()
        config.keycloak.requireEmailVerified = requireEmailVerified
        return try makeIdentityDirectory(config: config, logger: quietLogger)
    }

    func user(_ name: String, _ email: String?) -> IdentityAnswer {
        .found(IdentityUser(username: name, email: email.flatMap { MailAddress($0) }))
    }

    @Test func emailLookupFindsUser() throws {
        let answer = try directory().lookup(.email("alice@example.com"))
        #expect(answer == user("alice", "alice@example.com"))
    }

    @Test func usernameLookupFindsUser() throws {
        let answer = try directory().lookup(.username("bob"))
        #expect(answer == user("bob", "bob@example.com"))
    }

    @Test func unknownEmailIsNotFound() throws {
        #expect(try directory().lookup(.email("nobody@example.com")) == .notFound)
    }

    @Test func unknownUsernameIsNotFound() throws {
        #expect(try directory().lookup(.username("nobody")) == .notFound)
    }

    @Test func emailPrefixDoesNotMatch() throws {
        let directory = try directory()
        #expect(try directory.lookup(.email("alice@example.co")) == .notFound)
        #expect(try directory.lookup(.email("lice@example.com")) == .notFound)
        #expect(try directory.lookup(.username("ali")) == .notFound)
    }

    @Test func plusAddressFoundWithEncoding() throws {
        try server.changeUsers(#"{"upsert": [{"username": "bobx", "email": "bob+x@example.com", "enabled": true}]}"#)
        let directory = try directory()
        #expect(try directory.lookup(.email("bob+x@example.com")) == user("bobx", "bob+x@example.com"))

        // The server decodes a literal "+" as a space, so an unencoded
        // query would have found nobody.
        let token = try #require(directory.tokens).token().value.value
        let literal = try server.get("/admin/realms/mail/users?email=bob+x@example.com&exact=true", bearer: token)
        #expect(literal.status == 200)
        #expect(String(decoding: literal.body, as: UTF8.self) == "[]")
    }

    @Test func disabledUserIsNotFound() throws {
        let directory = try directory()
        #expect(try directory.lookup(.email("carol@example.com")) == .notFound)
        #expect(try directory.lookup(.username("carol")) == .notFound)
    }

    @Test func unverifiedEmailCountsByDefault() throws {
        #expect(try directory().lookup(.email("dave@example.com")) == user("dave", "dave@example.com"))
    }

    @Test func unverifiedEmailIgnoredWhenRequired() throws {
        let directory = try directory(requireEmailVerified: true)
        #expect(try directory.lookup(.email("dave@example.com")) == .notFound)
        #expect(try directory.lookup(.username("dave")) == user("dave", nil))
        #expect(try directory.lookup(.email("alice@example.com")) == user("alice", "alice@example.com"))
    }

    @Test func usernameShapedLikeEmail() throws {
        let directory = try directory()
        #expect(try directory.lookup(.username("erin@example.org")) == user("erin@example.org", "erin@example.org"))
    }

    @Test func duplicateEmailPicksFirstUsername() throws {
        try server.changeUsers(
            #"{"upsert": [{"username": "zoe", "email": "shared@example.com", "enabled": true},"#
                + #" {"username": "amy", "email": "shared@example.com", "enabled": true}]}"#)
        #expect(try directory().lookup(.email("shared@example.com")) == user("amy", "shared@example.com"))
    }

    @Test func answersAreServedFromCache() throws {
        let directory = try directory()
        #expect(directory.cachedAnswer(for: .email("alice@example.com")) == nil)
        _ = try directory.lookup(.email("alice@example.com"))
        _ = try directory.lookup(.email("nobody@example.com"))
        #expect(directory.cachedAnswer(for: .email("alice@example.com")) == user("alice", "alice@example.com"))
        #expect(directory.cachedAnswer(for: .email("nobody@example.com")) == .notFound)
        _ = try directory.lookup(.email("alice@example.com"))
        _ = try directory.lookup(.email("nobody@example.com"))
        #expect(try server.stats().requests("users") == 2)
    }

    @Test func concurrentLookupsCallProviderOnce() throws {
        let directory = try directory()
        // The latency keeps the first call in flight while the others arrive.
        try server.configure(#"{"latency_ms": 300}"#)
        let answers = Collector<IdentityAnswer?>()
        runOnThreads(100) { _ in
            answers.append(try? directory.lookup(.email("alice@example.com")))
        }
        let stats = try server.stats()
        #expect(answers.values.count == 100)
        #expect(answers.values.allSatisfy { $0 == self.user("alice", "alice@example.com") })
        #expect(stats.requests("users") == 1)
        #expect(stats.tokensIssued == 1)
    }
}

@Suite final class KeycloakPagingTests {
    let server: KeycloakDevServer

    init() throws {
        server = try KeycloakDevServer()
    }

    deinit {
        server.stop()
    }

    @Test func enabledUserOnSecondPageFound() throws {
        // 24 disabled users sort before the one enabled user, so it is on the second page of 20.
        var users = (0..<24).map { #"{"username": "dup\#(String(format: "%02d", $0))", "email": "dup@example.com", "enabled": false}"# }
        users.append(#"{"username": "dupz", "email": "dup@example.com", "enabled": true}"#)
        try server.changeUsers(#"{"upsert": [\#(users.joined(separator: ","))]}"#)
        let directory = try makeIdentityDirectory(config: server.identityConfig(), logger: quietLogger)
        let answer = try directory.lookup(.email("dup@example.com"))
        #expect(answer == .found(IdentityUser(username: "dupz", email: MailAddress("dup@example.com"))))
        #expect(try server.stats().requests("users") == 2)
    }
}
