import Model
import Testing

@testable import IdentityProvider

@Suite struct KeycloakJSONTests {
    func decodeUsers(_ text: String) -> Result<[KeycloakUserRepresentation], KeycloakDecodingError> {
        Result { () throws(KeycloakDecodingError) in
            try KeycloakJSON.decode([KeycloakUserRepresentation].self, from: Array(text.utf8))
        }
    }

    @Test func briefListDecodes() throws {
        let body = """
            [{"id":"1","username":"alice","firstName":"Alice","email":"alice@example.com",
              "emailVerified":true,"createdTimestamp":1700000000000,"enabled":true},
             {"id":"2","username":"service-account-mailcloak","emailVerified":false,"enabled":true}]
            """
        let users = try decodeUsers(body).get()
        #expect(
            users == [
                KeycloakUserRepresentation(
                    username: "alice", email: "alice@example.com", enabled: true, emailVerified: true),
                KeycloakUserRepresentation(
                    username: "service-account-mailcloak", email: nil, enabled: true, emailVerified: false),
            ])
    }

    @Test func emptyListDecodes() throws {
        #expect(try decodeUsers(" []\n").get() == [])
    }

    static let malformed: [(body: String, reason: String)] = [
        (#"{"error":"unknown_error"}"#, "unexpected JSON shape: expected an array at the top level"),
        (#"[{"username":"alice"}]"#, #"unexpected JSON shape: missing field "enabled" at [0]"#),
        (
            #"[{"username":null,"enabled":true}]"#,
            "unexpected JSON shape: null where a value of type String is required at [0].username"
        ),
        (#"[{"username":"a","enabled":"yes"}]"#, "unexpected JSON shape: expected a value of type Bool at [0].enabled"),
        (#"[{"username":"#, "invalid JSON"),
        ("", "an empty body instead of JSON"),
        ("service temporarily unavailable\n", #"text instead of JSON: "service temporarily unavailable""#),
        (
            "<!DOCTYPE html>\n<html><head><TITLE>502 Bad Gateway</TITLE></head><body></body></html>",
            "an HTML page instead of JSON (title: 502 Bad Gateway)"
        ),
        ("<html><body>login</body></html>", "an HTML page instead of JSON"),
    ]

    @Test(arguments: malformed)
    func malformedBodyGivesReason(body: String, reason: String) {
        #expect(decodeUsers(body) == .failure(KeycloakDecodingError(reason: reason)))
    }

    @Test func tokenResponseDecodes() throws {
        let body = #"{"access_token":"abc.def.ghi","expires_in":300,"refresh_expires_in":0,"token_type":"Bearer"}"#
        let token = try KeycloakJSON.decode(KeycloakTokenResponse.self, from: Array(body.utf8))
        #expect(token.accessToken == "abc.def.ghi")
        #expect(token.expiresIn == 300)
        #expect(token.tokenType == "Bearer")
    }

    @Test func tokenRejectionNamesOAuthError() {
        let body =
            #"{"error":"unauthorized_client","error_description":"Invalid client or Invalid client credentials"}"#
        let reason = KeycloakTokenProvider.describeRejection(HTTPResponse(status: 401, body: Array(body.utf8)))
        #expect(
            reason == "token endpoint rejected the client with HTTP 401: unauthorized_client "
                + "(Invalid client or Invalid client credentials); check client_id, client_secret "
                + "and that the client has service accounts enabled")
    }

    @Test func tokenRejectionDescribesHTMLBody() {
        let body = "<html><head><title>404 Not Found</title></head></html>"
        let reason = KeycloakTokenProvider.describeRejection(HTTPResponse(status: 404, body: Array(body.utf8)))
        #expect(reason == "token endpoint returned HTTP 404 with an HTML page instead of JSON (title: 404 Not Found)")
    }
}

@Suite struct KeycloakUserSelectionTests {
    func user(_ name: String, _ email: String?, enabled: Bool = true, verified: Bool? = true)
        -> KeycloakUserRepresentation
    {
        KeycloakUserRepresentation(username: name, email: email, enabled: enabled, emailVerified: verified)
    }

    @Test func selectionRequiresExactEmail() {
        let selection = KeycloakUserSelection(
            users: [user("alice", "alice@example.com")], key: .email("alice@example.co"), requireEmailVerified: false)
        #expect(selection.answer == .notFound)
        #expect(selection.fieldMatches == 0)
    }

    @Test func selectionComparesCaseInsensitively() {
        let selection = KeycloakUserSelection(
            users: [user("Alice", "Alice@Example.COM")], key: .email("alice@example.com"), requireEmailVerified: false)
        #expect(selection.answer == .found(IdentityUser(username: "alice", email: MailAddress("alice@example.com"))))
    }

    @Test func selectionSkipsDisabledUser() {
        let selection = KeycloakUserSelection(
            users: [user("carol", "carol@example.com", enabled: false)], key: .username("carol"),
            requireEmailVerified: false)
        #expect(selection.answer == .notFound)
        #expect(selection.fieldMatches == 1)
    }

    @Test func unverifiedEmailCountsByDefault() {
        let selection = KeycloakUserSelection(
            users: [user("dave", "dave@example.com", verified: false)], key: .email("dave@example.com"),
            requireEmailVerified: false)
        #expect(selection.answer == .found(IdentityUser(username: "dave", email: MailAddress("dave@example.com"))))
    }

    @Test func unverifiedEmailIgnoredWhenRequired() {
        let users = [user("dave", "dave@example.com", verified: false)]
        let byEmail = KeycloakUserSelection(users: users, key: .email("dave@example.com"), requireEmailVerified: true)
        let byName = KeycloakUserSelection(users: users, key: .username("dave"), requireEmailVerified: true)
        #expect(byEmail.answer == .notFound)
        #expect(byName.answer == .found(IdentityUser(username: "dave", email: nil)))
    }

    @Test func missingVerifiedFlagCountsAsUnverified() {
        let users = [user("dave", "dave@example.com", verified: nil)]
        let selection = KeycloakUserSelection(users: users, key: .email("dave@example.com"), requireEmailVerified: true)
        #expect(selection.answer == .notFound)
    }

    @Test func duplicateEmailPicksFirstUsername() {
        let users = [
            user("zed", "shared@example.com"), user("adam", "shared@example.com"),
            user("bert", "shared@example.com", enabled: false),
        ]
        let selection = KeycloakUserSelection(
            users: users, key: .email("shared@example.com"), requireEmailVerified: false)
        #expect(selection.answer == .found(IdentityUser(username: "adam", email: MailAddress("shared@example.com"))))
        #expect(selection.enabledMatches == ["adam", "zed"])
    }

    @Test func invalidEmailGivesUserWithoutAddress() {
        let selection = KeycloakUserSelection(
            users: [user("odd", "not-an-address")], key: .username("odd"), requireEmailVerified: false)
        #expect(selection.answer == .found(IdentityUser(username: "odd", email: nil)))
    }
}
