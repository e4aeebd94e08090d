// Access tokens for the Keycloak admin API, from the client credentials
// grant. One token is shared by all lookups until shortly before it
// expires; concurrent renewals are coalesced into one token request.
import Config
import Log
import Model
import RedisCache

/// An access token and the monotonic time after which it is not used.
struct AccessToken: Sendable, Equatable {
    let value: Secret
    /// Monotonic nanoseconds; the token is renewed from this point on.
    let renewAt: UInt64
    /// Lifetime in seconds as the token endpoint reported it.
    let expiresIn: Int
}

/// Obtains and caches access tokens. Thread-safe; `token()` blocks while a
/// token request runs, whether this thread or another one sent it.
final class KeycloakTokenProvider: @unchecked Sendable {
    // @unchecked: the stored `var`s are read and written only with `lock`
    // held; everything else is immutable.
    private let endpoint: String
    private let clientID: String
    private let clientSecret: Secret
    private let refreshSkew: Double
    private let http: HTTPClient
    private let logger: Logger
    private let clock: MonotonicClock
    /// How long a thread waits for a token request another thread sent.
    private let waitLimit: UInt64

    private let lock = ConditionLock()
    private var current: AccessToken?
    private var requestInFlight = false
    /// Counts finished token requests, so that waiters see that one ended.
    private var requestsFinished: UInt64 = 0
    private var lastFailure: IdentityLookupError?
    private var tokensObtained = 0

    init(
        config: KeycloakConfig, baseURL: String, clientSecret: Secret, http: HTTPClient, logger: Logger,
        clock: @escaping MonotonicClock
    ) {
        let realm = PercentEncoding.encode(config.realm)
        self.endpoint = "\(baseURL)/realms/\(realm)/protocol/openid-connect/token"
        self.clientID = config.clientID
        self.clientSecret = clientSecret
        self.refreshSkew = max(0, config.tokenRefreshSkew)
        self.http = http
        self.logger = logger
        self.clock = clock
        self.waitLimit = nanoseconds(http.options.timeout) + 1_000_000_000
    }

    /// Number of tokens obtained since start.
    var obtainedCount: Int {
        lock.withLock { tokensObtained }
    }

    /// Returns the current token, requesting a new one when there is none or
    /// it is due for renewal. A thread that finds a request already running
    /// waits for it and shares its outcome, success or failure.
    func token() throws(IdentityLookupError) -> AccessToken {
        lock.lock()
        let deadline = monotonicNanoseconds() + waitLimit
        while true {
            if let token = current, clock() < token.renewAt {
                lock.unlock()
                return token
            }
            if !requestInFlight { break }
            let finishedBefore = requestsFinished
            let woken = lock.wait(until: deadline)
            if requestsFinished != finishedBefore, let failure = lastFailure {
                lock.unlock()
                throw failure
            }
            if !woken && requestsFinished == finishedBefore {
                lock.unlock()
                throw .unavailable(reason: "timed out waiting for a token request sent by another thread")
            }
        }
        requestInFlight = true
        lock.unlock()

        let result = requestToken()
        lock.withLock {
            requestInFlight = false
            requestsFinished += 1
            switch result {
            case .success(let token):
                current = token
                lastFailure = nil
                tokensObtained += 1
            case .failure(let error):
                current = nil
                lastFailure = error
            }
            lock.broadcast()
        }
        return try result.get()
    }

    /// Drops `token` after the admin API rejected it, so that the next
    /// `token()` requests a new one. A token that was already replaced is
    /// left alone, so several threads rejected at once cause one renewal.
    func invalidate(_ token: AccessToken) {
        lock.withLock {
            if current == token { current = nil }
        }
    }

    private func requestToken() -> Result<AccessToken, IdentityLookupError> {
        let sentAt = clock()
        let form = PercentEncoding.formBody([
            ("grant_type", "client_credentials"), ("client_id", clientID), ("client_secret", clientSecret.value),
        ])
        let request = HTTPRequest(
            method: .post, url: endpoint,
            headers: ["Content-Type: application/x-www-form-urlencoded", "Accept: application/json"],
            body: Array(form.utf8))
        let response: HTTPResponse
        do {
            response = try http.send(request)
        } catch {
            return fail("token request failed: \(error)")
        }
        guard response.status == 200 else {
            return fail(Self.describeRejection(response))
        }
        let decoded: KeycloakTokenResponse
        do {
            decoded = try KeycloakJSON.decode(KeycloakTokenResponse.self, from: response.body)
        } catch {
            return fail("token endpoint returned HTTP 200 with \(error.reason)")
        }
        guard decoded.tokenType.map({ $0.lowercased() == "bearer" }) ?? true, !decoded.accessToken.isEmpty else {
            return fail("token endpoint returned no bearer access token")
        }
        let lifetime = max(1, decoded.expiresIn)
        logger.debug(
            "identity provider token obtained",
            [(.provider, "keycloak"), (.user, clientID), (.value, Secret.mask), (.limit, "\(lifetime)s")])
        return .success(
            AccessToken(
                value: Secret(decoded.accessToken), renewAt: sentAt + renewalDelay(lifetime: lifetime),
                expiresIn: decoded.expiresIn))
    }

    /// Time from the request until renewal: the lifetime minus the skew.
    /// NOTE: The skew is capped at half the lifetime, so a token whose
    /// lifetime is shorter than twice `token_refresh_skew` is still reused
    /// for half its life instead of being renewed on every lookup.
    private func renewalDelay(lifetime: Int) -> UInt64 {
        let seconds = Double(lifetime)
        return nanoseconds(seconds - min(refreshSkew, seconds / 2))
    }

    /// Logs a token request failure and returns it. One rate-limit group covers every reason, because
    /// reasons carry varying details such as curl's elapsed time.
    private func fail(_ reason: String) -> Result<AccessToken, IdentityLookupError> {
        let context = LogContext(.provider, "keycloak")
        logger.log(.warning, "identity provider token request failed", limitedBy: context, [
            (.provider, "keycloak"), (.user, clientID), (.reason, reason),
        ])
        return .failure(.unavailable(reason: reason))
    }

    /// Describes a non-200 response of the token endpoint from its OAuth
    /// error body; `error_description` never contains the secret.
    static func describeRejection(_ response: HTTPResponse) -> String {
        let status = response.status
        // A body that is not an OAuth error response is described in the reason instead, so the
        // failure is still reported.
        guard let error = try? KeycloakJSON.decode(OAuthErrorResponse.self, from: response.body) else {
            return "token endpoint returned HTTP \(status) with \(KeycloakJSON.describeBody(response.body))"
        }
        let detail = error.errorDescription.map { " (\($0))" } ?? ""
        let hint =
            status == 401 || error.error == "unauthorized_client" || error.error == "invalid_client"
            ? "; check client_id, client_secret and that the client has service accounts enabled" : ""
        return "token endpoint rejected the client with HTTP \(status): \(error.error)\(detail)\(hint)"
    }
}
