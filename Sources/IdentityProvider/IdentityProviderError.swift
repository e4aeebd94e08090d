// Errors of the identity-provider start-up check and of configuration
// validation. Lookups on the request path fail with IdentityLookupError
// (from Model) instead. No case carries a secret or a token.

/// A reason the identity provider cannot serve lookups, as found by
/// `checkIdentityProvider(config:)`, `makeIdentityDirectory(config:logger:)`
/// or `CachedIdentityDirectory.checkProvider()`.
public enum IdentityProviderError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A configuration value is invalid; `key` is its YAML path.
    case invalidConfiguration(key: String, reason: String)
    /// No access token could be obtained from the token endpoint.
    case tokenRequestFailed(reason: String)
    /// The access token is not a JWT whose payload can be read.
    case unreadableToken(reason: String)
    /// The service account lacks the realm-management role that lets it
    /// read users; `roles` lists the realm-management roles it has.
    case missingUserReadRole(clientID: String, realm: String, roles: [String])
    /// The token was fine, but the user query failed.
    case userQueryFailed(reason: String)
    /// A lookup failed after the last successful check.
    case providerUnavailable(reason: String)
    /// No check has run yet.
    case notChecked

    public var description: String {
        switch self {
        case .invalidConfiguration(let key, let reason):
            return "invalid configuration \(key): \(reason)"
        case .tokenRequestFailed(let reason):
            return "identity provider token request failed: \(reason)"
        case .unreadableToken(let reason):
            return "identity provider access token is unreadable: \(reason)"
        case .missingUserReadRole(let clientID, let realm, let roles):
            return Self.missingRoleMessage(clientID: clientID, realm: realm, roles: roles)
        case .userQueryFailed(let reason):
            return "identity provider user query failed: \(reason)"
        case .providerUnavailable(let reason):
            return "identity provider unavailable: \(reason)"
        case .notChecked:
            return "identity provider not checked yet"
        }
    }

    private static func missingRoleMessage(clientID: String, realm: String, roles: [String]) -> String {
        let account = "service-account-\(clientID.lowercased())"
        let current = roles.isEmpty ? "none" : roles.joined(separator: ", ")
        let consequence =
            roles.contains("query-users")
            ? "With query-users alone, Keycloak answers every user query with an empty list, "
                + "so every recipient would be rejected as unknown."
            : "Keycloak would answer user queries with 403 Forbidden, or with empty user lists "
                + "if query-users is added alone, so lookups fail or every recipient is rejected."
        return "the service account of client \(clientID) in realm \(realm) lacks the realm-management role "
            + "view-users (its realm-management roles: \(current)). \(consequence) "
            + "Grant view-users to the service account: in the admin console open Clients > \(clientID) > "
            + "Service account roles > Assign role, filter by clients, and pick realm-management view-users; "
            + "or run: kcadm.sh add-roles -r \(realm) --uusername \(account) "
            + "--cclientid realm-management --rolename view-users"
    }
}
