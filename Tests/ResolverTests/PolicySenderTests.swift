// Sender checks of the policy service: unauthenticated clients may not use a
// local sender, OAuth users may send as their primary address or their own
// aliases, applications only from their allow-list, and other SASL methods
// are rejected.
import Config
import Model
import PolicyProtocol
import Resolver
import Testing

enum SenderTable {
    /// Clients that did not authenticate.
    static let unauthenticatedRows: [PolicyRow] = [
        PolicyRow("foreign recipient", recipient: "friend@external.org", expect: .recipientDomainNotLocal),
        PolicyRow("foreign recipient local sender", sender: "alice@example.com", recipient: "friend@external.org",
                  expect: .recipientDomainNotLocal),
        PolicyRow("local sender", sender: "alice@example.com", expect: .localSenderRequiresAuth),
        PolicyRow("local alias sender", sender: "Sales@Example.COM", expect: .localSenderRequiresAuth),
        PolicyRow("unknown local sender", sender: "nobody@example.net", expect: .localSenderRequiresAuth),
        PolicyRow("local sender trailing dot", sender: "alice@example.com.", expect: .localSenderRequiresAuth),
        PolicyRow("null sender bounce", sender: "", expect: .dunno),
        PolicyRow("absent sender", sender: nil, expect: .dunno),
        PolicyRow("external sender", sender: "someone@external.org", expect: .dunno),
        PolicyRow("disabled domain sender", sender: "alice@old.example", expect: .dunno),
        PolicyRow("VERP sender", sender: "list+bounce=alice=example.com@lists.external.org", expect: .dunno),
    ]

    /// OAuth users (XOAUTH2, OAUTHBEARER), method spelled as a client may type it.
    static let oauthRows: [PolicyRow] = [
        oauth("primary sender", sender: "alice@example.com", expect: .dunno),
        oauth("upper case method", method: "XOAUTH2", sender: "alice@example.com", expect: .dunno),
        oauth("oauthbearer method", method: "OAUTHBEARER", sender: "alice@example.com", expect: .dunno),
        oauth("mixed case primary sender", sender: "Alice@Example.COM", expect: .dunno),
        oauth("own alias", sender: "sales@example.com", expect: .dunno),
        oauth("own alias mixed case", sender: "SALES@example.com", expect: .dunno),
        oauth("own alias extension", sender: "sales+x@example.com", expect: .dunno),
        oauth("own alias upper owner", sender: "info@example.com", expect: .dunno),
        oauth("own disabled alias", sender: "old@example.com", expect: .senderNotOwned),
        oauth("other user's alias", sender: "support@example.com", expect: .senderNotOwned),
        oauth("other user's primary", sender: "bob@example.com", expect: .senderNotOwned),
        oauth("primary with extension", sender: "alice+tag@example.com", expect: .dunno),
        oauth("other user with extension", sender: "bob+tag@example.com", expect: .senderNotOwned),
        oauth("foreign sender", sender: "alice@external.org", expect: .senderNotOwned),
        oauth("sender without at sign", sender: "alice", expect: .senderNotOwned),
        oauth("mixed case login", login: "Alice", sender: "alice@example.com", expect: .dunno),
        oauth("email as login", login: "alice@example.com", sender: "alice@example.com", expect: .dunno),
        oauth("email login other domain", login: "Dave@Example.NET", sender: "dave@example.net", expect: .dunno),
        oauth("email login wrong sender", login: "dave@example.net", sender: "alice@example.com",
              expect: .senderNotOwned),
        oauth("address username alias", login: "carol@example.net", sender: "team@example.com", expect: .dunno),
        oauth("address username primary", login: "Carol@example.net", sender: "carol@example.net", expect: .dunno),
        oauth("user without email", login: "frank", sender: "frank@example.com", expect: .senderNotOwned),
        oauth("unknown login", login: "mallory", sender: "alice@example.com", expect: .senderNotOwned),
        oauth("unknown email login", login: "mallory@example.com", sender: "mallory@example.com",
              expect: .senderNotOwned),
        oauth("null sender default", sender: "", expect: .senderNotOwned),
        oauth("null sender allowed", sender: "",
              config: policyConfig(allowAuthenticatedNullSender: true), expect: .dunno),
        oauth("foreign recipient relays", sender: "alice@example.com", recipient: "friend@external.org",
              expect: .dunno),
        oauth("foreign recipient alias sender", sender: "sales@example.com", recipient: "friend@external.org",
              expect: .dunno),
        oauth("foreign recipient wrong sender", sender: "bob@example.com", recipient: "friend@external.org",
              expect: .senderNotOwned),
        oauth("unknown local recipient", sender: "alice@example.com", recipient: "nobody@example.com",
              expect: .noSuchUser),
        oauth("no delimiter extension sender", sender: "alice+tag@example.com",
              config: policyConfig(delimiter: ""), expect: .senderNotOwned),
        oauth("minus delimiter sender", sender: "sales-x@example.com",
              config: policyConfig(delimiter: "+-"), expect: .dunno),
    ]

    /// Applications (PLAIN, LOGIN) and their sender allow-lists.
    static let appRows: [PolicyRow] = [
        app("listed sender", sender: "news@example.com", expect: .dunno),
        app("upper case method", method: "PLAIN", sender: "news@example.com", expect: .dunno),
        app("login method", method: "LOGIN", sender: "promo@example.net", expect: .dunno),
        app("mixed case app id", login: "NewsLetter", sender: "news@example.com", expect: .dunno),
        app("mixed case listed sender", sender: "News@Example.COM", expect: .dunno),
        app("listed sender extension", sender: "news+may@example.com", expect: .dunno),
        app("unlisted local sender", sender: "alice@example.com", expect: .senderNotOwned),
        app("unlisted foreign sender", sender: "news@external.org", expect: .senderNotOwned),
        app("disabled app", login: "billing", sender: "billing@example.com", expect: .senderNotOwned),
        app("unknown app", login: "ghost", sender: "news@example.com", expect: .senderNotOwned),
        app("user login as app", login: "alice", sender: "alice@example.com", expect: .senderNotOwned),
        app("null sender", sender: "", expect: .senderNotOwned),
        app("null sender allowed", sender: "",
            config: policyConfig(allowAuthenticatedNullSender: true), expect: .dunno),
        app("foreign recipient relays", sender: "news@example.com", recipient: "friend@external.org",
            expect: .dunno),
        app("unknown local recipient", sender: "news@example.com", recipient: "nobody@example.com",
            expect: .noSuchUser),
    ]

    /// SASL methods that are neither OAuth nor application methods.
    static let otherMethodRows: [PolicyRow] = [
        PolicyRow("CRAM-MD5", sender: "alice@example.com", method: "CRAM-MD5", login: "alice",
                  expect: .unsupportedAuthMethod),
        PolicyRow("XCLIENT", sender: "alice@example.com", method: "XCLIENT", login: "alice",
                  expect: .unsupportedAuthMethod),
        PolicyRow("GSSAPI", sender: "alice@example.com", method: "GSSAPI", login: "alice",
                  expect: .unsupportedAuthMethod),
        PolicyRow("empty method with login", sender: "alice@example.com", method: "", login: "alice",
                  expect: .unsupportedAuthMethod),
        PolicyRow("unsupported method null sender", sender: "", method: "CRAM-MD5", login: "alice",
                  expect: .unsupportedAuthMethod),
        PolicyRow("unsupported method foreign recipient", sender: "alice@example.com",
                  recipient: "friend@external.org", method: "GSSAPI", login: "alice",
                  expect: .unsupportedAuthMethod),
    ]

    static var allRows: [PolicyRow] { unauthenticatedRows + oauthRows + appRows + otherMethodRows }

    private static func oauth(
        _ label: String, method: String = "xoauth2", login: String = "alice", sender: String?,
        recipient: String = "bob@example.com", config: PolicyConfig = PolicyConfig(), expect: PolicyAction
    ) -> PolicyRow {
        PolicyRow(label, sender: sender, recipient: recipient, method: method, login: login,
                  config: config, expect: expect)
    }

    private static func app(
        _ label: String, method: String = "plain", login: String = "newsletter", sender: String?,
        recipient: String = "bob@example.com", config: PolicyConfig = PolicyConfig(), expect: PolicyAction
    ) -> PolicyRow {
        PolicyRow(label, sender: sender, recipient: recipient, method: method, login: login,
                  config: config, expect: expect)
    }
}

@Suite struct PolicySenderTests {
    @Test(arguments: SenderTable.unauthenticatedRows)
    func unauthenticatedSenderDecidesRow(_ row: PolicyRow) {
        #expect(Harness(config: row.config).decide(row.request) == row.expected)
    }

    @Test(arguments: SenderTable.oauthRows)
    func oauthSenderDecidesRow(_ row: PolicyRow) {
        #expect(Harness(config: row.config).decide(row.request) == row.expected)
    }

    @Test(arguments: SenderTable.appRows)
    func appSenderDecidesRow(_ row: PolicyRow) {
        #expect(Harness(config: row.config).decide(row.request) == row.expected)
    }

    @Test(arguments: SenderTable.otherMethodRows)
    func otherMethodDecidesRow(_ row: PolicyRow) {
        #expect(Harness(config: row.config).decide(row.request) == row.expected)
    }

    @Test func localSenderEncodesAuthRequired() {
        let action = Harness().decide(policyRequest(sender: "alice@example.com"))
        let expected = "action=553 5.7.1 Sending from local domains requires authentication\n\n"
        #expect(action?.encoded == Array(expected.utf8))
    }

    @Test func senderNotOwnedEncodesText() {
        let request = policyRequest(sender: "bob@example.com", method: "xoauth2", login: "alice")
        let action = Harness().decide(request)
        #expect(action?.encoded == Array("action=553 5.7.1 Sender not owned by authenticated user\n\n".utf8))
    }

    @Test func unsupportedMethodEncodesText() {
        let request = policyRequest(sender: "alice@example.com", method: "CRAM-MD5", login: "alice")
        let action = Harness().decide(request)
        #expect(action?.encoded == Array("action=553 5.7.1 Unsupported authentication method\n\n".utf8))
    }

    @Test func oauthLoginNeedsUsernameKey() {
        let request = policyRequest(sender: "alice@example.com", recipient: "friend@external.org",
                                    method: "XOAUTH2", login: "Alice")
        #expect(Harness().resolver.decide(request) == .needs(.username("alice")))
    }

    @Test func emailLoginNeedsEmailAfterUsername() {
        let request = policyRequest(sender: "dave@example.net", recipient: "friend@external.org",
                                    method: "xoauth2", login: "Dave@Example.NET")
        let resolver = Harness().resolver
        let fetched: FetchedIdentities = [.username("dave@example.net"): .success(.notFound)]
        #expect(resolver.decide(request) == .needs(.username("dave@example.net")))
        #expect(resolver.decide(request, fetched: fetched) == .needs(.email("dave@example.net")))
    }

    @Test func oauthCachedLoginDecidesAtOnce() {
        let directory = TableDirectory(cached: [.username("alice"): .found(Fixture.users[0])])
        let request = policyRequest(sender: "sales@example.com", recipient: "friend@external.org",
                                    method: "xoauth2", login: "alice")
        #expect(Harness(directory: directory).resolver.decide(request) == .decided(.dunno))
    }

    @Test func appSenderNeedsNoLookup() {
        let request = policyRequest(sender: "news@example.com", recipient: "friend@external.org",
                                    method: "plain", login: "newsletter")
        #expect(Harness().resolver.decide(request) == .decided(.dunno))
    }

    @Test func recipientAndLoginUseBothCaches() {
        let directory = TableDirectory(cached: [
            .email("bob@example.com"): .found(Fixture.users[1]),
            .username("alice"): .found(Fixture.users[0]),
        ])
        let request = policyRequest(sender: "alice@example.com", recipient: "bob@example.com",
                                    method: "xoauth2", login: "alice")
        #expect(Harness(directory: directory).resolver.decide(request) == .decided(.dunno))
    }
}
