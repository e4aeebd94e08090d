// The identity provider as the cached directory uses it: one blocking call
// per key, and a start-up check. Keycloak and Authentik implement it.
import Config
import Model

/// One identity provider. Thread-safe and blocking.
protocol IdentityBackend: Sendable {
    /// Name for logs: `keycloak` or `authentik`.
    var name: String { get }
    /// Upper bound of one `lookup(_:)`, in seconds, for waiters.
    var maxLookupSeconds: Double { get }
    /// Access tokens obtained since start (0 for a provider with a static token).
    var tokensObtained: Int { get }

    /// Returns the enabled user for `key`, or notFound.
    /// - Throws: `.unavailable` when the provider gave no usable answer.
    func lookup(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer

    /// Checks credentials, permissions and one user query; returns a one-line summary.
    func check() -> Result<String, IdentityProviderError>
}

/// Keycloak's admin API behind the `IdentityBackend` interface.
struct KeycloakBackend: IdentityBackend {
    let config: KeycloakConfig
    let client: KeycloakClient
    let tokens: KeycloakTokenProvider

    var name: String { "keycloak" }

    // A lookup can take two token requests and, per page, two user queries
    // (the second pair after a 401), each bounded by request_timeout.
    var maxLookupSeconds: Double { Double(2 + 2 * KeycloakClient.maxPages) * config.requestTimeout }

    var tokensObtained: Int { tokens.obtainedCount }

    func lookup(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer {
        try client.lookup(key)
    }

    func check() -> Result<String, IdentityProviderError> {
        IdentityProviderCheck.run(keycloak: config, tokens: tokens, client: client)
    }
}
