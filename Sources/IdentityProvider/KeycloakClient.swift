// User lookups through the Keycloak admin REST API: one exact-match query
// per key, with a bearer token from KeycloakTokenProvider. Every failure
// (transport, non-2xx status, body that is not a user list) becomes
// IdentityLookupError.unavailable, never a not-found answer.
import Config
import Log
import Model

/// Looks users up by email or username. Thread-safe and blocking.
final class KeycloakClient: Sendable {
    /// Page size of a user query. Exact matches are at most a few users;
    /// a full page without a match means the server matched substrings.
    static let maxResults = 20
    /// Pages read at most for one key.
    static let maxPages = 5

    private let usersEndpoint: String
    private let usersPath: String
    private let realm: String
    private let clientID: String
    private let requireEmailVerified: Bool
    private let tokens: KeycloakTokenProvider
    private let http: HTTPClient
    private let logger: Logger

    init(config: KeycloakConfig, baseURL: String, tokens: KeycloakTokenProvider, http: HTTPClient, logger: Logger) {
        self.usersPath = "/admin/realms/\(PercentEncoding.encode(config.realm))/users"
        self.usersEndpoint = baseURL + usersPath
        self.realm = config.realm
        self.clientID = config.clientID
        self.requireEmailVerified = config.requireEmailVerified
        self.tokens = tokens
        self.http = http
        self.logger = logger
    }

    /// Returns the enabled user for `key`, or notFound.
    /// - Throws: `.unavailable` when the provider gave no usable answer.
    func lookup(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer {
        let (users, complete) = try queryAllPages(key)
        let selection = KeycloakUserSelection(users: users, key: key, requireEmailVerified: requireEmailVerified)
        if selection.fieldMatches == 0 && !complete {
            throw fail(
                "user query returned a full page of \(Self.maxResults) users without an exact match; "
                    + "the server seems to ignore exact=true and match substrings")
        }
        if selection.enabledMatches.count > 1 {
            // One group for all keys, so a directory with many duplicates writes one line per 10 s.
            logger.log(
                .warning, "several enabled identity provider users share one key; using the first by username",
                limitedBy: LogContext(.realm, realm),
                [(.realm, realm), (.key, key.description), (.user, selection.enabledMatches.joined(separator: ","))])
        }
        logger.debug("identity provider lookup", [(.key, key.description), (.state, Self.describe(selection.answer))])
        return selection.answer
    }

    /// Pages through the exact-match query for `key`, up to `maxPages`
    /// pages. Exact matches are one user unless the realm allows duplicate
    /// emails, so a second page is rare.
    /// - Returns: the users, and whether the last page was not full.
    private func queryAllPages(_ key: IdentityKey) throws(IdentityLookupError) -> ([KeycloakUserRepresentation], Bool)
    {
        let field: String
        let value: String
        switch key {
        case .email(let text): (field, value) = ("email", text)
        case .username(let text): (field, value) = ("username", text)
        }
        var users: [KeycloakUserRepresentation] = []
        for page in 0..<Self.maxPages {
            let batch = try queryUsers(field: field, value: value, max: Self.maxResults, first: page * Self.maxResults)
            users += batch
            if batch.count < Self.maxResults { return (users, true) }
            // A full page without one exact match comes from a server that
            // ignores exact=true; more pages would only add substring matches.
            let matches = KeycloakUserSelection(users: batch, key: key, requireEmailVerified: false).fieldMatches
            if matches == 0 { return (users, false) }
        }
        return (users, false)
    }

    /// Sends one exact-match user query and decodes the list.
    func queryUsers(
        field: String, value: String, max: Int, first: Int = 0
    ) throws(IdentityLookupError) -> [KeycloakUserRepresentation] {
        let paging = first > 0 ? "&first=\(first)" : ""
        let url = usersEndpoint + Self.usersQuery(field: field, value: value, max: max) + paging
        let response = try authorizedGet(url)
        guard (200..<300).contains(response.status) else {
            throw fail(describeStatus(response))
        }
        do {
            return try KeycloakJSON.decode([KeycloakUserRepresentation].self, from: response.body)
        } catch {
            throw fail("GET \(usersPath) returned HTTP \(response.status) with \(error.reason)")
        }
    }

    /// Builds the query string of a user query. Values are percent-encoded
    /// with the unreserved set only, so `+` travels as `%2B`.
    static func usersQuery(field: String, value: String, max: Int) -> String {
        "?\(field)=\(PercentEncoding.encode(value))&exact=true&briefRepresentation=true&max=\(max)"
    }

    /// Sends a GET with the current token. On 401 the token is dropped and
    /// the request is sent once more with a new one.
    private func authorizedGet(_ url: String) throws(IdentityLookupError) -> HTTPResponse {
        var token = try tokens.token()
        var response = try get(url, token: token)
        guard response.status == 401 else { return response }

        logger.debug("identity provider rejected the token; renewing it", [(.provider, "keycloak")])
        tokens.invalidate(token)
        token = try tokens.token()
        response = try get(url, token: token)
        guard response.status == 401 else { return response }
        throw fail(
            "GET \(usersPath) returned HTTP 401 to a newly issued token; check that base_url is the "
                + "address Keycloak issues tokens for (its hostname setting)")
    }

    private func get(_ url: String, token: AccessToken) throws(IdentityLookupError) -> HTTPResponse {
        let request = HTTPRequest(
            method: .get, url: url, headers: ["Authorization: Bearer \(token.value.value)", "Accept: application/json"])
        do {
            return try http.send(request)
        } catch {
            throw fail("GET \(usersPath) failed: \(error)")
        }
    }

    private func describeStatus(_ response: HTTPResponse) -> String {
        let status = response.status
        switch status {
        case 403:
            return "GET \(usersPath) returned HTTP 403 Forbidden: the service account of client \(clientID) "
                + "lacks the realm-management role view-users"
        case 404:
            return "GET \(usersPath) returned HTTP 404 with \(KeycloakJSON.describeBody(response.body)); "
                + "check base_url and that realm \(realm) exists"
        default:
            return "GET \(usersPath) returned HTTP \(status) with \(KeycloakJSON.describeBody(response.body))"
        }
    }

    /// Logs a lookup failure and returns it. One rate-limit group covers every reason, because
    /// reasons carry varying details such as curl's elapsed time.
    private func fail(_ reason: String) -> IdentityLookupError {
        logger.log(.warning, "identity provider lookup failed", limitedBy: LogContext(.provider, "keycloak"), [
            (.provider, "keycloak"), (.realm, realm), (.reason, reason),
        ])
        return .unavailable(reason: reason)
    }

    private static func describe(_ answer: IdentityAnswer) -> String {
        switch answer {
        case .found(let user): "found:\(user.username)"
        case .notFound: "notFound"
        }
    }
}
