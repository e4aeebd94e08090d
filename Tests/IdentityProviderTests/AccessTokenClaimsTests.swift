import Testing

@testable import IdentityProvider

@Suite struct AccessTokenClaimsTests {
    func roleCheck(_ payload: String) throws -> Result<[String], IdentityProviderError> {
        let claims = try AccessTokenClaims.decode(jwt: makeJWT(payloadJSON: payload))
        return UserReadRoles.check(claims, clientID: "mailcloak", realm: "mail")
    }

    @Test func viewUsersPassesRoleCheck() throws {
        let payload = #"{"exp":1,"resource_access":{"realm-management":{"roles":["view-users","query-users"]}}}"#
        #expect(try roleCheck(payload) == .success(["view-users", "query-users"]))
    }

    @Test func manageUsersPassesRoleCheck() throws {
        let payload = #"{"resource_access":{"account":{"roles":["x"]},"realm-management":{"roles":["manage-users"]}}}"#
        #expect(try roleCheck(payload) == .success(["manage-users"]))
    }

    @Test func queryUsersAloneFailsRoleCheck() throws {
        let payload = #"{"resource_access":{"realm-management":{"roles":["query-users","query-groups"]}}}"#
        let expected = IdentityProviderError.missingUserReadRole(
            clientID: "mailcloak", realm: "mail", roles: ["query-groups", "query-users"])
        #expect(try roleCheck(payload) == .failure(expected))
    }

    @Test func queryUsersMessageExplainsRejection() {
        let message = IdentityProviderError.missingUserReadRole(
            clientID: "mailcloak", realm: "mail", roles: ["query-users"]
        ).description
        #expect(message.contains("answers every user query with an empty list"))
        #expect(message.contains("every recipient would be rejected"))
        #expect(
            message.contains(
                "kcadm.sh add-roles -r mail --uusername service-account-mailcloak --cclientid realm-management "
                    + "--rolename view-users"))
    }

    @Test func missingResourceAccessFailsRoleCheck() throws {
        let expected = IdentityProviderError.missingUserReadRole(clientID: "mailcloak", realm: "mail", roles: [])
        #expect(try roleCheck(#"{"exp":1}"#) == .failure(expected))
    }

    @Test func otherClientRolesDoNotCount() throws {
        let payload = #"{"resource_access":{"account":{"roles":["view-users"]}}}"#
        let expected = IdentityProviderError.missingUserReadRole(clientID: "mailcloak", realm: "mail", roles: [])
        #expect(try roleCheck(payload) == .failure(expected))
    }

    static let unreadable: [(token: String, reason: String)] = [
        ("abc", "not a JWT: expected 3 dot-separated parts, found 1"),
        ("a.b.c.d", "not a JWT: expected 3 dot-separated parts, found 4"),
        ("eyJhbGciOiJIUzI1NiJ9.!!!.sig", "JWT payload is not base64url"),
        ("eyJhbGciOiJIUzI1NiJ9.WzFd.sig", "unexpected JSON shape: expected an object at the top level"),
    ]

    @Test(arguments: unreadable)
    func unreadableTokenGivesReason(token: String, reason: String) {
        let result = Result { () throws(KeycloakDecodingError) in try AccessTokenClaims.decode(jwt: token) }
        guard case .failure(let error) = result else {
            Issue.record("expected a decoding error for \(token)")
            return
        }
        #expect(error == KeycloakDecodingError(reason: reason))
    }

    @Test func base64URLDecodesUnpaddedText() {
        #expect(AccessTokenClaims.base64URLDecode("_-8") == [0xFF, 0xEF])
        #expect(AccessTokenClaims.base64URLDecode("YQ") == Array("a".utf8))
    }
}
