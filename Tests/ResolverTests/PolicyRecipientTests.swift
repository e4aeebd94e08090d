// Recipient checks of the policy service at the RCPT stage: local recipients
// must exist as a user's primary address or an enabled alias, and
// unauthenticated mail to other domains is rejected (no open relay).
import Config
import Model
import PolicyProtocol
import Resolver
import Testing

/// `jürgen@example.com` with the `ü` sent as the Latin-1 byte 0xFC, which is
/// invalid UTF-8, decoded as the policy decoder does.
let latin1Recipient = String(decoding: Array("j".utf8) + [0xFC] + Array("rgen@example.com".utf8), as: UTF8.self)

enum RecipientTable {
    /// Recipients with the default delimiter `+`, from an unauthenticated external sender.
    static let rows: [PolicyRow] = [
        PolicyRow("primary address", recipient: "alice@example.com", expect: .dunno),
        PolicyRow("primary of user without alias", recipient: "bob@example.com", expect: .dunno),
        PolicyRow("enabled alias", recipient: "sales@example.com", expect: .dunno),
        PolicyRow("disabled alias", recipient: "old@example.com", expect: .noSuchUser),
        PolicyRow("unknown local address", recipient: "nobody@example.com", expect: .noSuchUser),
        PolicyRow("user without email", recipient: "frank@example.com", expect: .noSuchUser),
        PolicyRow("disabled domain", recipient: "alice@old.example", expect: .recipientDomainNotLocal),
        PolicyRow("alias in disabled domain", recipient: "sales@old.example", expect: .recipientDomainNotLocal),
        PolicyRow("foreign domain", recipient: "bob@external.org", expect: .recipientDomainNotLocal),
        PolicyRow("recipient without at sign", recipient: "example.com", expect: .recipientDomainNotLocal),
        PolicyRow("mixed case primary", recipient: "Alice@Example.COM", expect: .dunno),
        PolicyRow("mixed case alias", recipient: "SALES@example.COM", expect: .dunno),
        PolicyRow("primary with extension", recipient: "alice+tag@example.com", expect: .dunno),
        PolicyRow("mixed case extension", recipient: "Alice+Tag@Example.COM", expect: .dunno),
        PolicyRow("alias with extension", recipient: "sales+x@example.com", expect: .dunno),
        PolicyRow("unknown with extension", recipient: "nobody+tag@example.com", expect: .noSuchUser),
        PolicyRow("disabled alias with extension", recipient: "old+x@example.com", expect: .noSuchUser),
        PolicyRow("leading delimiter", recipient: "+alice@example.com", expect: .noSuchUser),
        PolicyRow("other delimiter", recipient: "alice-tag@example.com", expect: .noSuchUser),
        PolicyRow("unquoted space alias", recipient: "john doe@example.com", expect: .dunno),
        PolicyRow("quoted local part", recipient: "\"john doe\"@example.com", expect: .dunno),
        PolicyRow("quoted unknown local part", recipient: "\"jane doe\"@example.com", expect: .noSuchUser),
        PolicyRow("raw UTF-8 alias", recipient: "jürgen@example.com", expect: .dunno),
        PolicyRow("upper case UTF-8 alias", recipient: "JÜRGEN@example.com", expect: .dunno),
        PolicyRow("invalid UTF-8 replaced", recipient: latin1Recipient, expect: .noSuchUser),
        PolicyRow("trailing dot domain", recipient: "alice@example.com.", expect: .dunno),
        PolicyRow("alias trailing dot domain", recipient: "sales@example.com.", expect: .dunno),
        PolicyRow("second local domain", recipient: "dave@example.net", expect: .dunno),
        PolicyRow("empty recipient", recipient: "", expect: .dunno),
    ]

    /// The same checks under other `recipient_delimiter` settings.
    static let delimiterRows: [PolicyRow] = [
        PolicyRow("no delimiter primary", recipient: "alice@example.com",
                  config: policyConfig(delimiter: ""), expect: .dunno),
        PolicyRow("no delimiter extension", recipient: "alice+tag@example.com",
                  config: policyConfig(delimiter: ""), expect: .noSuchUser),
        PolicyRow("no delimiter alias extension", recipient: "sales+x@example.com",
                  config: policyConfig(delimiter: ""), expect: .noSuchUser),
        PolicyRow("two delimiters plus", recipient: "alice+tag@example.com",
                  config: policyConfig(delimiter: "+-"), expect: .dunno),
        PolicyRow("two delimiters minus", recipient: "alice-tag@example.com",
                  config: policyConfig(delimiter: "+-"), expect: .dunno),
        PolicyRow("two delimiters alias", recipient: "sales-x@example.com",
                  config: policyConfig(delimiter: "+-"), expect: .dunno),
        PolicyRow("two delimiters first wins", recipient: "alice-a+b@example.com",
                  config: policyConfig(delimiter: "+-"), expect: .dunno),
        PolicyRow("two delimiters unknown", recipient: "nobody-x@example.com",
                  config: policyConfig(delimiter: "+-"), expect: .noSuchUser),
    ]
}

@Suite struct PolicyRecipientTests {
    @Test(arguments: RecipientTable.rows)
    func recipientCheckDecidesRow(_ row: PolicyRow) {
        let harness = Harness(config: row.config)
        #expect(harness.decide(row.request) == row.expected)
    }

    @Test(arguments: RecipientTable.delimiterRows)
    func recipientDelimiterDecidesRow(_ row: PolicyRow) {
        let harness = Harness(config: row.config)
        #expect(harness.decide(row.request) == row.expected)
    }

    @Test func invalidUTF8DecodesToReplacement() {
        #expect(latin1Recipient == "j\u{FFFD}rgen@example.com")
    }

    @Test func unknownRecipientEncodesNoSuchUser() {
        let action = Harness().decide(policyRequest(recipient: "nobody@example.com"))
        #expect(action?.encoded == Array("action=550 5.1.1 No such user\n\n".utf8))
    }

    @Test func foreignRecipientEncodesNotLocal() {
        let action = Harness().decide(policyRequest(recipient: "bob@external.org"))
        #expect(action?.encoded == Array("action=550 5.7.1 Recipient domain not local\n\n".utf8))
    }

    @Test func knownRecipientEncodesDunno() {
        let action = Harness().decide(policyRequest(recipient: "alice@example.com"))
        #expect(action?.encoded == Array("action=DUNNO\n\n".utf8))
    }

    @Test func recipientMissNeedsEmailKey() {
        let resolver = Harness().resolver
        let request = policyRequest(recipient: "Alice+Tag@Example.COM")
        #expect(resolver.decide(request) == .needs(.email("alice@example.com")))
    }

    @Test func recipientFetchedAnswerDecides() {
        let resolver = Harness().resolver
        let request = policyRequest(recipient: "alice@example.com")
        let alice = Fixture.users[0]
        #expect(resolver.decide(request, fetched: [.email("alice@example.com"): .success(.found(alice))]) == .decided(.dunno))
        #expect(resolver.decide(request, fetched: [.email("alice@example.com"): .success(.notFound)]) == .decided(.noSuchUser))
    }

    @Test func recipientCachedAnswerDecidesAtOnce() {
        let alice = Fixture.users[0]
        let directory = TableDirectory(cached: [.email("alice@example.com"): .found(alice)])
        let resolver = Harness(directory: directory).resolver
        #expect(resolver.decide(policyRequest(recipient: "alice@example.com")) == .decided(.dunno))
    }

    @Test func recipientCachedNotFoundRejects() {
        let directory = TableDirectory(cached: [.email("nobody@example.com"): .notFound])
        let resolver = Harness(directory: directory).resolver
        #expect(resolver.decide(policyRequest(recipient: "nobody@example.com")) == .decided(.noSuchUser))
    }

    @Test func fetchedAnswerWinsOverCache() {
        let directory = TableDirectory(cached: [.email("alice@example.com"): .notFound])
        let resolver = Harness(directory: directory).resolver
        let fetched: FetchedIdentities = [.email("alice@example.com"): .success(.found(Fixture.users[0]))]
        #expect(resolver.decide(policyRequest(recipient: "alice@example.com"), fetched: fetched) == .decided(.dunno))
    }

    @Test func aliasRecipientNeedsNoLookup() {
        let resolver = Harness().resolver
        #expect(resolver.decide(policyRequest(recipient: "sales+x@example.com")) == .decided(.dunno))
    }
}
