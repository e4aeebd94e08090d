// Identity-provider failures in policy decisions: a failed lookup defers the
// mail (failure_mode tempfail) or lets it through (failure_mode dunno), and
// is never turned into a permanent rejection.
import Config
import Model
import PolicyProtocol
import Resolver
import Testing

/// A policy row decided while the provider fails for some keys.
struct FailureRow: Sendable, CustomTestStringConvertible {
    let row: PolicyRow
    let failingKeys: Set<IdentityKey>

    var testDescription: String { row.testDescription }
}

enum FailureTable {
    static let dunnoMode = policyConfig(failureMode: .dunno)

    static let rows: [FailureRow] = [
        failing("known recipient", recipient: "alice@example.com", keys: [.email("alice@example.com")],
                expect: .lookupFailure),
        failing("unknown recipient never 550", recipient: "nobody@example.com",
                keys: [.email("nobody@example.com")], expect: .lookupFailure),
        failing("extension recipient", recipient: "nobody+x@example.com",
                keys: [.email("nobody@example.com")], expect: .lookupFailure),
        failing("fail open recipient", recipient: "nobody@example.com",
                keys: [.email("nobody@example.com")], config: dunnoMode, expect: .dunno),
        failing("alias recipient needs no provider", recipient: "sales@example.com",
                keys: [.email("sales@example.com")], expect: .dunno),
        failing("foreign recipient needs no provider", recipient: "friend@external.org",
                keys: [.email("friend@external.org")], expect: .recipientDomainNotLocal),
        failing("oauth login", sender: "alice@example.com", recipient: "friend@external.org",
                method: "xoauth2", login: "alice", keys: [.username("alice")], expect: .lookupFailure),
        failing("oauth wrong sender never 553", sender: "bob@example.com", recipient: "friend@external.org",
                method: "xoauth2", login: "alice", keys: [.username("alice")], expect: .lookupFailure),
        failing("fail open oauth login", sender: "bob@example.com", recipient: "friend@external.org",
                method: "XOAUTH2", login: "alice", keys: [.username("alice")], config: dunnoMode,
                expect: .dunno),
        failing("email login second key", sender: "dave@example.net", recipient: "friend@external.org",
                method: "xoauth2", login: "dave@example.net", keys: [.email("dave@example.net")],
                expect: .lookupFailure),
        failing("local recipient and login", sender: "alice@example.com", recipient: "bob@example.com",
                method: "xoauth2", login: "alice", keys: [.username("alice")], expect: .lookupFailure),
        failing("app needs no provider", sender: "news@example.com", recipient: "friend@external.org",
                method: "plain", login: "newsletter", keys: [.username("newsletter")], expect: .dunno),
        failing("unauthenticated local sender", sender: "alice@example.com", recipient: "nobody@example.com",
                keys: [.email("nobody@example.com")], expect: .lookupFailure),
        failing("fail open keeps local sender check", sender: "alice@example.com",
                recipient: "nobody@example.com", keys: [.email("nobody@example.com")], config: dunnoMode,
                expect: .localSenderRequiresAuth),
        failing("fail open keeps method check", sender: "alice@example.com", recipient: "nobody@example.com",
                method: "CRAM-MD5", login: "alice", keys: [.email("nobody@example.com")], config: dunnoMode,
                expect: .unsupportedAuthMethod),
        failing("fail open keeps app check", sender: "alice@example.com", recipient: "nobody@example.com",
                method: "plain", login: "newsletter", keys: [.email("nobody@example.com")], config: dunnoMode,
                expect: .senderNotOwned),
        failing("fail open both lookups", sender: "alice@example.com", recipient: "nobody@example.com",
                method: "xoauth2", login: "alice", keys: [.email("nobody@example.com"), .username("alice")],
                config: dunnoMode, expect: .dunno),
        failing("fail open recipient owned sender", sender: "alice@example.com", recipient: "nobody@example.com",
                method: "xoauth2", login: "alice", keys: [.email("nobody@example.com")], config: dunnoMode,
                expect: .dunno),
        failing("fail open recipient foreign sender", sender: "bob@example.com", recipient: "nobody@example.com",
                method: "xoauth2", login: "alice", keys: [.email("nobody@example.com")], config: dunnoMode,
                expect: .senderNotOwned),
        failing("MAIL oauth login", state: "MAIL", sender: "alice@example.com", recipient: nil,
                method: "xoauth2", login: "alice", keys: [.username("alice")], expect: .lookupFailure),
    ]

    private static func failing(
        _ label: String, state: String = "RCPT", sender: String? = "someone@external.org", recipient: String?,
        method: String = "", login: String = "", keys: Set<IdentityKey>,
        config: PolicyConfig = PolicyConfig(), expect: PolicyAction
    ) -> FailureRow {
        let row = PolicyRow(label, state: state, sender: sender, recipient: recipient, method: method,
                            login: login, config: config, expect: expect)
        return FailureRow(row: row, failingKeys: keys)
    }
}

@Suite struct PolicyFailureTests {
    @Test(arguments: FailureTable.rows)
    func providerFailureDecidesRow(_ failure: FailureRow) {
        let harness = Harness(config: failure.row.config, directory: TableDirectory(unavailable: failure.failingKeys))
        #expect(harness.decide(failure.row.request) == failure.row.expected)
    }

    @Test(arguments: FailureTable.rows)
    func providerFailureAddsNoRejection(_ failure: FailureRow) {
        let harness = Harness(config: failure.row.config, directory: TableDirectory(unavailable: failure.failingKeys))
        let healthy = Harness(config: failure.row.config).decide(failure.row.request)
        let action = harness.decide(failure.row.request)

        // The outage may change which check decides first, but a request that
        // a working provider lets through must never be rejected permanently.
        if case .reject = action {
            #expect(healthy != .dunno)
        }
    }

    @Test func fetchedFailureDefers() {
        let resolver = Harness().resolver
        let fetched: FetchedIdentities = [.email("nobody@example.com"): .failure(.unavailable(reason: "timeout"))]
        let decision = resolver.decide(policyRequest(recipient: "nobody@example.com"), fetched: fetched)
        #expect(decision == .decided(.lookupFailure))
    }

    @Test func fetchedOverloadDefers() {
        let resolver = Harness().resolver
        let fetched: FetchedIdentities = [.username("alice"): .failure(.overloaded)]
        let request = policyRequest(sender: "alice@example.com", recipient: "friend@external.org",
                                    method: "xoauth2", login: "alice")
        #expect(resolver.decide(request, fetched: fetched) == .decided(.lookupFailure))
    }

    @Test func fetchedFailureFailsOpen() {
        let resolver = Harness(config: FailureTable.dunnoMode).resolver
        let fetched: FetchedIdentities = [.email("nobody@example.com"): .failure(.unavailable(reason: "timeout"))]
        let decision = resolver.decide(policyRequest(recipient: "nobody@example.com"), fetched: fetched)
        #expect(decision == .decided(.dunno))
    }

    @Test func fetchedFailureWinsOverCache() {
        let directory = TableDirectory(cached: [.email("alice@example.com"): .found(Fixture.users[0])])
        let resolver = Harness(directory: directory).resolver
        let fetched: FetchedIdentities = [.email("alice@example.com"): .failure(.unavailable(reason: "timeout"))]
        let decision = resolver.decide(policyRequest(recipient: "alice@example.com"), fetched: fetched)
        #expect(decision == .decided(.lookupFailure))
    }

    @Test func lookupFailureEncodesText() {
        let harness = Harness(directory: TableDirectory(unavailable: [.email("alice@example.com")]))
        let action = harness.decide(policyRequest(recipient: "alice@example.com"))
        #expect(action?.encoded == Array("action=451 4.3.0 Temporary authentication/lookup failure\n\n".utf8))
    }
}
