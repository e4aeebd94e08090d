// Reads the payload of a Keycloak access token (a JWT) to see which
// realm-management roles the service account holds. The signature is not
// verified: the token comes straight from the token endpoint over the
// configured connection, and the roles only feed a diagnostic check.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The claims of an access token that the start-up check reads.
struct AccessTokenClaims: Decodable, Equatable, Sendable {
    struct ClientAccess: Decodable, Equatable, Sendable {
        var roles: [String]?
    }

    var exp: Int?
    var resourceAccess: [String: ClientAccess]?

    enum CodingKeys: String, CodingKey {
        case exp
        case resourceAccess = "resource_access"
    }

    /// Largest token accepted, in bytes; Keycloak tokens are a few KiB.
    static let maxTokenBytes = 64 * 1024

    /// Decodes the payload (second part) of a JWT.
    /// - Throws: a reason when the token has not three dot-separated parts,
    ///   the payload is not base64url, or it is not a JSON object.
    static func decode(jwt token: String) throws(KeycloakDecodingError) -> AccessTokenClaims {
        guard token.utf8.count <= maxTokenBytes else {
            throw KeycloakDecodingError(reason: "token longer than \(maxTokenBytes) bytes")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw KeycloakDecodingError(reason: "not a JWT: expected 3 dot-separated parts, found \(parts.count)")
        }
        guard let payload = base64URLDecode(parts[1]) else {
            throw KeycloakDecodingError(reason: "JWT payload is not base64url")
        }
        return try KeycloakJSON.decode(AccessTokenClaims.self, from: payload)
    }

    /// The roles of client `realm-management`: empty when the claim is
    /// present without them, nil when the token has no `resource_access`.
    var realmManagementRoles: [String]? {
        guard let resourceAccess else { return nil }
        return resourceAccess["realm-management"]?.roles ?? []
    }

    /// Decodes base64url without padding, as JWTs use it (RFC 7515).
    static func base64URLDecode(_ text: Substring) -> [UInt8]? {
        var standard = String(text).map { character -> Character in
            switch character {
            case "-": "+"
            case "_": "/"
            default: character
            }
        }
        while standard.count % 4 != 0 { standard.append("=") }
        guard let data = Data(base64Encoded: String(standard)) else { return nil }
        return Array(data)
    }
}

/// The realm-management roles that let a service account read users.
enum UserReadRoles {
    static let sufficient = ["view-users", "manage-users"]

    /// Checks that `claims` grant a sufficient role.
    static func check(
        _ claims: AccessTokenClaims, clientID: String, realm: String
    ) -> Result<[String], IdentityProviderError> {
        let roles = claims.realmManagementRoles ?? []
        guard roles.contains(where: { sufficient.contains($0) }) else {
            return .failure(.missingUserReadRole(clientID: clientID, realm: realm, roles: roles.sorted()))
        }
        return .success(roles)
    }
}
