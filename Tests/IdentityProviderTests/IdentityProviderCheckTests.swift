import Config
import Foundation
import Model
import Testing

@testable import IdentityProvider

// The start-up check and readiness against the development directory,
// and configuration validation.
#if canImport(Glibc)
    import Glibc
#endif

@Suite final class IdentityProviderCheckTests {
    let server: KeycloakDevServer

    init() throws {
        server = try KeycloakDevServer()
    }

    deinit {
        server.stop()
    }

    @Test func checkPassesWithViewUsers() throws {
        let result = checkIdentityProvider(config: server.identityConfig())
        #expect(
            result
                == .success(
                    "Keycloak realm mail: client mailcloak has realm-management view-users; "
                        + "user query returned 1 user(s); token lifetime 300 s"))
        #expect(try server.stats().requests("users") == 1)
    }

    @Test func queryOnlyClientFailsCheck() throws {
        let config = server.identityConfig(clientID: "mailcloak-query-only", secret: "query-only-dev-secret")
        let result = checkIdentityProvider(config: config)
        #expect(
            result
                == .failure(
                    .missingUserReadRole(clientID: "mailcloak-query-only", realm: "mail", roles: ["query-users"])))
        // The check stops before querying users.
        #expect(try server.stats().requests("users") == 0)
    }

    @Test func queryOnlyClientSeesNoUsers() throws {
        // What the check prevents: with query-users alone every lookup
        // succeeds and finds nobody.
        let config = server.identityConfig(clientID: "mailcloak-query-only", secret: "query-only-dev-secret")
        let directory = try makeIdentityDirectory(config: config, logger: quietLogger)
        #expect(try directory.lookup(.email("alice@example.com")) == .notFound)
    }

    @Test func clientWithoutRolesGets403() throws {
        try server.changeUsers(
            #"{"upsert": [{"username": "service-account-mailcloak-query-only", "#
                + #""serviceAccountClientId": "mailcloak-query-only", "clientRoles": {}}]}"#)
        let config = server.identityConfig(clientID: "mailcloak-query-only", secret: "query-only-dev-secret")
        let directory = try makeIdentityDirectory(config: config, logger: quietLogger)

        #expect(
            directory.checkProvider()
                == .failure(.missingUserReadRole(clientID: "mailcloak-query-only", realm: "mail", roles: [])))
        let error = #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("alice")) }
        #expect(
            error
                == .unavailable(
                    reason: "GET /admin/realms/mail/users returned HTTP 403 Forbidden: the service account of "
                        + "client mailcloak-query-only lacks the realm-management role view-users"))
    }

    @Test func wrongSecretFailsCheck() {
        let result = checkIdentityProvider(config: server.identityConfig(secret: "not-the-secret"))
        guard case .failure(.tokenRequestFailed(let reason)) = result else {
            Issue.record("expected tokenRequestFailed, got \(result)")
            return
        }
        #expect(reason.contains("unauthorized_client"))
    }

    @Test func readinessFollowsCheckAndLookups() throws {
        let directory = try makeIdentityDirectory(config: server.identityConfig(), logger: quietLogger)
        #expect(directory.readiness == .failure(.notChecked))

        let checked = directory.checkProvider()
        #expect(directory.readiness == checked)

        try server.configure(#"{"failure": "500", "failure_count": 1}"#)
        #expect(throws: IdentityLookupError.self) { try directory.lookup(.username("alice")) }
        guard case .failure(.providerUnavailable) = directory.readiness else {
            Issue.record("expected providerUnavailable, got \(directory.readiness)")
            return
        }
        _ = try directory.lookup(.username("alice"))
        #expect(directory.readiness == checked)
    }

    @Test func secretFileIsRead() throws {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("mailcloak-secret-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try "demo-secret\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        var config = server.identityConfig(secret: "")
        config.keycloak.clientSecretFile = path
        let directory = try makeIdentityDirectory(config: config, logger: quietLogger)
        #expect(try directory.lookup(.username("bob")) != .notFound)
    }
}

@Suite struct IdentityConfigValidationTests {
    func validationError(_ change: (inout IdentityConfig) -> Void) -> IdentityProviderError? {
        var config = IdentityConfig()
        config.keycloak.clientSecret = "secret"
        change(&config)
        do {
            _ = try makeIdentityDirectory(config: config, logger: quietLogger)
            return nil
        } catch {
            return error as? IdentityProviderError
        }
    }

    @Test func validConfigBuildsDirectory() {
        #expect(validationError { _ in } == nil)
    }

    @Test func nonHTTPBaseURLIsRejected() {
        #expect(
            validationError { $0.keycloak.baseURL = "ftp://sso.example.com" }
                == .invalidConfiguration(
                    key: "identity.keycloak.base_url",
                    reason: "expected an http:// or https:// URL, got \"ftp://sso.example.com\""))
    }

    @Test func baseURLWithQueryIsRejected() {
        #expect(
            validationError { $0.keycloak.baseURL = "https://sso.example.com/?x=1" }
                == .invalidConfiguration(
                    key: "identity.keycloak.base_url",
                    reason:
                        "expected a base URL without query, fragment or spaces, got \"https://sso.example.com/?x=1\""
                ))
    }

    @Test func missingSecretIsRejected() {
        #expect(
            validationError { $0.keycloak.clientSecret = "" }
                == .invalidConfiguration(
                    key: "identity.keycloak.client_secret", reason: "missing: set client_secret or client_secret_file"))
    }

    @Test func missingSecretFileIsRejected() {
        let error = validationError { $0.keycloak.clientSecretFile = "/nonexistent/mailcloak-secret" }
        #expect(
            error
                == .invalidConfiguration(
                    key: "identity.keycloak.client_secret_file",
                    reason: "cannot open /nonexistent/mailcloak-secret: No such file or directory"))
    }

    @Test func zeroTimeoutIsRejected() {
        #expect(
            validationError { $0.keycloak.requestTimeout = 0 }
                == .invalidConfiguration(
                    key: "identity.keycloak.request_timeout", reason: "must be a number of seconds above 0, got 0.0"))
    }

    @Test func negativeCacheSizeIsRejected() {
        #expect(
            validationError { $0.cache.maxEntries = -1 }
                == .invalidConfiguration(key: "identity.cache.max_entries", reason: "must be 0 or more, got -1"))
    }
}
