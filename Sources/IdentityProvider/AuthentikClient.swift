// User lookups through Authentik's core API (`/api/v3/core/users/`) with a
// static API token. Every failure (transport, non-2xx status, a body that
// is not a paginated user list) becomes IdentityLookupError.unavailable.
//
// Matching case: Authentik's UsersFilter declares `username` and `email` as
// plain Django filter fields, so both are exact and, on PostgreSQL,
// case-sensitive; its FilterSet has no `__iexact` variants, and django-filter
// ignores parameters it does not know (an `email__iexact=` query would list
// every user). Keys arrive folded to lower case, so a lookup first queries
// the exact filter with that value, which finds every user stored in lower
// case. Without an enabled match it queries `search=`, which Authentik runs
// as a case-insensitive substring match over username, name and email, and
// keeps only users whose field equals the key ignoring case. So a user
// stored as `Alice@Example.com` is found, and a not-found answer costs two
// requests (both cached as one negative answer).
import Config
import Log
import Model

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A user as Authentik's user list returns it; only the fields lookups use.
struct AuthentikUser: Decodable, Equatable, Sendable {
    var username: String
    var email: String?
    var isActive: Bool

    enum CodingKeys: String, CodingKey {
        case username
        case email
        case isActive = "is_active"
    }
}

/// One page of `/api/v3/core/users/`.
struct AuthentikUserPage: Decodable, Sendable {
    struct Pagination: Decodable, Sendable {
        /// Number of the next page; 0 when this page is the last.
        var next: Int
    }

    var pagination: Pagination
    var results: [AuthentikUser]
}

/// Looks users up by email or username. Thread-safe and blocking.
final class AuthentikClient: Sendable {
    /// Pages read at most for one query.
    static let maxPages = 5
    static let usersPath = "/api/v3/core/users/"

    private let usersEndpoint: String
    private let token: Secret
    private let pageSize: Int
    private let http: HTTPClient
    private let logger: Logger

    init(config: AuthentikConfig, baseURL: String, token: Secret, http: HTTPClient, logger: Logger) {
        self.usersEndpoint = baseURL + Self.usersPath
        self.token = token
        self.pageSize = max(1, config.pageSize)
        self.http = http
        self.logger = logger
    }

    /// Returns the active user for `key`, or notFound.
    func lookup(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer {
        let (field, value) = Self.field(key)
        let exact = try queryPages("\(field)=\(PercentEncoding.encode(value))&is_active=true")
        if let answer = Self.select(exact, key: key) { return answer }
        let search = try queryPages("search=\(PercentEncoding.encode(value))&is_active=true")
        let answer = Self.select(search, key: key) ?? .notFound
        logger.debug("identity provider lookup", [(.provider, "authentik"), (.key, key.description)])
        return answer
    }

    /// Reads up to `maxPages` pages of the user list for `filter`.
    func queryPages(_ filter: String) throws(IdentityLookupError) -> [AuthentikUser] {
        var users: [AuthentikUser] = []
        var page = 1
        for _ in 0..<Self.maxPages {
            let batch = try queryPage(filter, page: page)
            users += batch.results
            guard batch.pagination.next > page else { break }
            page = batch.pagination.next
        }
        return users
    }

    /// Sends one user-list query and decodes the page.
    func queryPage(_ filter: String, page: Int) throws(IdentityLookupError) -> AuthentikUserPage {
        let url = "\(usersEndpoint)?\(filter)&page=\(page)&page_size=\(pageSize)"
        let request = HTTPRequest(
            method: .get, url: url, headers: ["Authorization: Bearer \(token.value)", "Accept: application/json"])
        let response: HTTPResponse
        do {
            response = try http.send(request)
        } catch {
            throw fail("GET \(Self.usersPath) failed: \(error)")
        }
        guard (200..<300).contains(response.status) else {
            throw fail(Self.describeStatus(response))
        }
        do {
            return try KeycloakJSON.decode(AuthentikUserPage.self, from: response.body)
        } catch {
            throw fail("GET \(Self.usersPath) returned HTTP \(response.status) with \(error.reason)")
        }
    }

    /// Picks the first active user, by username, whose field equals the key ignoring case.
    static func select(_ users: [AuthentikUser], key: IdentityKey) -> IdentityAnswer? {
        let matching: [AuthentikUser]
        switch key {
        case .email(let value): matching = users.filter { $0.isActive && $0.email?.lowercased() == value }
        case .username(let value): matching = users.filter { $0.isActive && $0.username.lowercased() == value }
        }
        guard let chosen = matching.min(by: { $0.username.lowercased() < $1.username.lowercased() }) else {
            return nil
        }
        let address = chosen.email.flatMap { $0.isEmpty ? nil : MailAddress($0.lowercased()) }
        return .found(IdentityUser(username: chosen.username, email: address))
    }

    private static func field(_ key: IdentityKey) -> (String, String) {
        switch key {
        case .email(let value): ("email", value)
        case .username(let value): ("username", value)
        }
    }

    static func describeStatus(_ response: HTTPResponse) -> String {
        let status = response.status
        switch status {
        case 401:
            return "GET \(usersPath) returned HTTP 401: the API token is invalid or expired; "
                + "create a token with intent API in Directory > Tokens and set identity.authentik.token"
        case 403:
            return "GET \(usersPath) returned HTTP 403 Forbidden: the token's user lacks the permission "
                + "to view users"
        default:
            return "GET \(usersPath) returned HTTP \(status) with \(KeycloakJSON.describeBody(response.body))"
        }
    }

    /// Logs a lookup failure and returns it. One rate-limit group covers every reason, because
    /// reasons carry varying details such as curl's elapsed time.
    private func fail(_ reason: String) -> IdentityLookupError {
        logger.log(.warning, "identity provider lookup failed", limitedBy: LogContext(.provider, "authentik"), [
            (.provider, "authentik"), (.reason, reason),
        ])
        return .unavailable(reason: reason)
    }
}

/// Authentik behind the `IdentityBackend` interface.
struct AuthentikBackend: IdentityBackend {
    let config: AuthentikConfig
    let client: AuthentikClient

    var name: String { "authentik" }

    /// Two queries of up to `maxPages` pages each.
    var maxLookupSeconds: Double { Double(2 * AuthentikClient.maxPages) * config.requestTimeout }

    var tokensObtained: Int { 0 }

    func lookup(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer {
        try client.lookup(key)
    }

    /// Queries one page of users. An empty list means the token's user may view no users.
    func check() -> Result<String, IdentityProviderError> {
        do {
            let page = try client.queryPage("is_active=true", page: 1)
            guard !page.results.isEmpty else {
                return .failure(
                    .userQueryFailed(
                        reason: "the user list is empty: the token's user seems to lack the permission to view users"))
            }
            return .success("Authentik user query returned \(page.results.count) user(s)")
        } catch {
            switch error {
            case .unavailable(let reason): return .failure(.userQueryFailed(reason: reason))
            case .overloaded: return .failure(.userQueryFailed(reason: "overloaded"))
            }
        }
    }
}
