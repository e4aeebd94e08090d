// In-memory stand-ins for the resolver's two data sources, the fixture data
// every resolver test shares, and a harness that runs the fetch-and-ask-again
// loop the server runs: on `.needs(key)` it looks the key up, adds the answer
// to `fetched` and asks again, for at most four fetches per request.
import Config
import Model
import PolicyProtocol
import Resolver
import Socketmap
import Testing

/// An identity directory backed by a fixed table of users.
///
/// `cachedAnswer` returns only what `cached` contains, so a test picks the
/// cached path or the fetch path. `lookup` searches the table and throws
/// `.unavailable` for the keys in `unavailable`.
final class TableDirectory: IdentityDirectory {
    let users: [IdentityUser]
    let cached: [IdentityKey: IdentityAnswer]
    let unavailable: Set<IdentityKey>

    init(
        users: [IdentityUser] = Fixture.users,
        cached: [IdentityKey: IdentityAnswer] = [:],
        unavailable: Set<IdentityKey> = []
    ) {
        self.users = users
        self.cached = cached
        self.unavailable = unavailable
    }

    func cachedAnswer(for key: IdentityKey) -> IdentityAnswer? {
        cached[key]
    }

    func lookup(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer {
        if unavailable.contains(key) {
            throw .unavailable(reason: "identity provider stopped by the test")
        }
        let match: IdentityUser?
        switch key {
        case .email(let address): match = users.first { $0.email?.description == address }
        case .username(let name): match = users.first { $0.username == name }
        }
        return match.map(IdentityAnswer.found) ?? .notFound
    }
}

/// A snapshot provider whose snapshot never changes; nil plays "not loaded yet".
final class FixedSnapshots: SnapshotProvider {
    let current: Snapshot?

    init(_ snapshot: Snapshot?) {
        current = snapshot
    }
}

/// The users, domains, aliases and apps the tests run against.
enum Fixture {
    /// Identity-provider users. `carol@example.net` uses her address as username.
    static let users: [IdentityUser] = [
        IdentityUser(username: "alice", email: MailAddress("alice@example.com")),
        IdentityUser(username: "bob", email: MailAddress("bob@example.com")),
        IdentityUser(username: "dave", email: MailAddress("dave@example.net")),
        IdentityUser(username: "carol@example.net", email: MailAddress("carol@example.net")),
        IdentityUser(username: "frank", email: nil),
    ]

    static let domains: [DomainEntry] = [
        DomainEntry(name: "example.com", enabled: true),
        DomainEntry(name: "example.net", enabled: true),
        DomainEntry(name: "old.example", enabled: false),
    ]

    static let aliases: [AliasEntry] = [
        alias("sales@example.com", owner: "alice"),
        alias("info@example.com", owner: "Alice"),
        alias("old@example.com", owner: "alice", enabled: false),
        alias("support@example.com", owner: "bob"),
        alias("\"john doe\"@example.com", owner: "bob"),
        alias("jürgen@example.com", owner: "bob"),
        alias("team@example.com", owner: "carol@example.net"),
        alias("loop@example.com", owner: "loop"),
        alias("sales@old.example", owner: "alice"),
    ]

    static let apps: [AppEntry] = [
        AppEntry(
            id: "newsletter", enabled: true,
            senders: [MailAddress("news@example.com")!, MailAddress("promo@example.net")!]),
        AppEntry(id: "billing", enabled: false, senders: [MailAddress("billing@example.com")!]),
    ]

    static let snapshot = Snapshot(domains: domains, aliases: aliases, apps: apps, loadedAt: 1_700_000_000)

    private static func alias(_ address: String, owner: String, enabled: Bool = true) -> AliasEntry {
        AliasEntry(address: MailAddress(address)!, username: owner, enabled: enabled)
    }
}

/// Builds a policy configuration from the defaults.
func policyConfig(
    delimiter: String = "+",
    failureMode: PolicyConfig.FailureMode = .tempfail,
    allowAuthenticatedNullSender: Bool = false
) -> PolicyConfig {
    var config = PolicyConfig()
    config.recipientDelimiter = delimiter
    config.failureMode = failureMode
    config.allowAuthenticatedNullSender = allowAuthenticatedNullSender
    return config
}

/// Builds a policy request as Postfix sends it at `state`.
func policyRequest(
    state: String = "RCPT",
    sender: String? = "someone@external.org",
    recipient: String? = "alice@example.com",
    method: String = "",
    login: String = ""
) -> PolicyRequest {
    PolicyRequest(
        request: "smtpd_access_policy", protocolState: state, sender: sender, recipient: recipient,
        saslMethod: method, saslUsername: login, clientAddress: "192.0.2.10")
}

/// One row of a policy table: a request, the configuration it runs under and
/// the exact action expected.
struct PolicyRow: Sendable, CustomTestStringConvertible {
    let label: String
    let request: PolicyRequest
    let config: PolicyConfig
    let expected: PolicyAction

    init(
        _ label: String, state: String = "RCPT", sender: String? = "someone@external.org",
        recipient: String? = "alice@example.com", method: String = "", login: String = "",
        config: PolicyConfig = PolicyConfig(), expect expected: PolicyAction
    ) {
        self.label = label
        self.request = policyRequest(
            state: state, sender: sender, recipient: recipient, method: method, login: login)
        self.config = config
        self.expected = expected
    }

    var testDescription: String { label }
}

/// A resolver over fixture data, driven as the server drives it.
struct Harness {
    /// Identity fetches the server allows for one request before it gives up.
    static let maxFetches = 4

    let resolver: Resolver
    let directory: TableDirectory

    init(
        config: PolicyConfig = PolicyConfig(),
        snapshot: Snapshot? = Fixture.snapshot,
        directory: TableDirectory = TableDirectory()
    ) {
        self.directory = directory
        resolver = Resolver(config: config, snapshots: FixedSnapshots(snapshot), identities: directory)
    }

    /// Decides `request`, fetching each missing identity answer from the table.
    ///
    /// Records an issue and returns nil when the resolver asks for a key twice
    /// or needs more than ``maxFetches`` fetches. Every action it returns has
    /// been checked with ``expectPolicyReplyShape(_:sourceLocation:)``.
    func decide(
        _ request: PolicyRequest, fetched initial: FetchedIdentities = [:],
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> PolicyAction? {
        var fetched = initial
        for _ in 0...Self.maxFetches {
            switch resolver.decide(request, fetched: fetched) {
            case .decided(let action):
                expectPolicyReplyShape(action, sourceLocation: sourceLocation)
                return action
            case .needs(let key):
                guard fetched[key] == nil else {
                    Issue.record("resolver asked again for fetched key \(key)", sourceLocation: sourceLocation)
                    return nil
                }
                fetched[key] = fetch(key)
            }
        }
        Issue.record("decision needed more than \(Self.maxFetches) fetches", sourceLocation: sourceLocation)
        return nil
    }

    /// Looks up a socketmap query, fetching each missing identity answer from the table.
    func lookup(
        map: String, key: String, fetched initial: FetchedIdentities = [:],
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> SocketmapReply? {
        var fetched = initial
        let request = SocketmapRequest(name: map, key: key)
        for _ in 0...Self.maxFetches {
            switch resolver.lookup(request, fetched: fetched) {
            case .decided(let reply):
                return reply
            case .needs(let key):
                guard fetched[key] == nil else {
                    Issue.record("resolver asked again for fetched key \(key)", sourceLocation: sourceLocation)
                    return nil
                }
                fetched[key] = fetch(key)
            }
        }
        Issue.record("lookup needed more than \(Self.maxFetches) fetches", sourceLocation: sourceLocation)
        return nil
    }

    private func fetch(_ key: IdentityKey) -> Result<IdentityAnswer, IdentityLookupError> {
        do throws(IdentityLookupError) {
            return .success(try directory.lookup(key))
        } catch {
            return .failure(error)
        }
    }
}

/// Expects the reply rules Postfix needs: `action=` first, exactly one blank
/// line at the end, no CR, and for anything but DUNNO a 3-digit code, an
/// enhanced status of the same class and a text.
///
/// Reads the wire bytes only when ``PolicyAction/shapeViolation`` is nil,
/// because encoding a malformed action stops the process.
func expectPolicyReplyShape(_ action: PolicyAction, sourceLocation: SourceLocation = #_sourceLocation) {
    guard action.shapeViolation == nil else {
        Issue.record("malformed action \(action): \(action.shapeViolation!)", sourceLocation: sourceLocation)
        return
    }
    let bytes = action.encoded
    let text = String(decoding: bytes, as: UTF8.self)
    #expect(text.hasPrefix("action="), sourceLocation: sourceLocation)
    #expect(bytes.suffix(2) == [0x0A, 0x0A], sourceLocation: sourceLocation)
    #expect(bytes.dropLast(2).last != 0x0A, sourceLocation: sourceLocation)
    #expect(bytes.filter { $0 == 0x0A }.count == 2, sourceLocation: sourceLocation)
    #expect(!bytes.contains(0x0D), sourceLocation: sourceLocation)
    guard action != .dunno else {
        #expect(text == "action=DUNNO\n\n", sourceLocation: sourceLocation)
        return
    }

    let words = text.dropFirst("action=".count).dropLast(2).split(
        separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
    guard words.count == 3 else {
        Issue.record("reply \(text.debugDescription) lacks code, status or text", sourceLocation: sourceLocation)
        return
    }
    let code = words[0]
    let status = words[1].split(separator: ".", omittingEmptySubsequences: false)
    #expect(code.count == 3, sourceLocation: sourceLocation)
    #expect(code.allSatisfy(\.isASCII) && code.allSatisfy(\.isNumber), sourceLocation: sourceLocation)
    #expect(code.first == "4" || code.first == "5", sourceLocation: sourceLocation)
    #expect(status.count == 3, sourceLocation: sourceLocation)
    #expect(status.first == code.prefix(1), sourceLocation: sourceLocation)
    #expect(status.first?.count == 1, sourceLocation: sourceLocation)
    #expect(status.allSatisfy { (1...3).contains($0.count) && $0.allSatisfy(\.isNumber) }, sourceLocation: sourceLocation)
    #expect(!words[2].isEmpty, sourceLocation: sourceLocation)
}
