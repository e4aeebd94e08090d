// Socketmap lookups: `alias` rewrites an alias to its owner's address and
// must return NOTFOUND for any key whose reply Postfix would expand again
// into itself, `domain` lists the enabled local domains and `mailbox` the
// existing addresses.
import Config
import Model
import Resolver
import Socketmap
import Testing

/// One socketmap query and the exact expected reply.
struct MapRow: Sendable, CustomTestStringConvertible {
    let map: String
    let key: String
    let config: PolicyConfig
    let expected: SocketmapReply

    init(_ map: String, _ key: String, config: PolicyConfig = PolicyConfig(), expect expected: SocketmapReply) {
        self.map = map
        self.key = key
        self.config = config
        self.expected = expected
    }

    var testDescription: String { "\(Self.shortened(map)) \(Self.shortened(key).debugDescription)" }

    /// Keeps test names readable for the oversized rows.
    private static func shortened(_ text: String) -> String {
        text.utf8.count <= 60 ? text : "\(text.prefix(30))...(\(text.utf8.count) bytes)"
    }
}

/// Builds a local part of `prefix` and `count` letters, for keys near Postfix's reply size limit.
func longLocalPart(_ prefix: String, count: Int) -> String {
    prefix + String(repeating: "x", count: count)
}

enum MapTable {
    static let aliasRows: [MapRow] = [
        MapRow("alias", "sales@example.com", expect: .ok("alice@example.com")),
        MapRow("alias", "Sales@Example.COM", expect: .ok("alice@example.com")),
        MapRow("alias", "sales@example.com.", expect: .ok("alice@example.com")),
        MapRow("alias", "sales+x@example.com", expect: .ok("alice+x@example.com")),
        MapRow("alias", "SALES+X@example.com", expect: .ok("alice+x@example.com")),
        MapRow("alias", "sales+x+y@example.com", expect: .ok("alice+x+y@example.com")),
        MapRow("alias", "info@example.com", expect: .ok("alice@example.com")),
        MapRow("alias", "support@example.com", expect: .ok("bob@example.com")),
        MapRow("alias", "team@example.com", expect: .ok("carol@example.net")),
        MapRow("alias", "team+y@example.com", expect: .ok("carol+y@example.net")),
        MapRow("alias", "\"john doe\"@example.com", expect: .ok("bob@example.com")),
        MapRow("alias", "john doe@example.com", expect: .ok("bob@example.com")),
        MapRow("alias", "\"John Doe\"@Example.com", expect: .ok("bob@example.com")),
        MapRow("alias", "jürgen@example.com", expect: .ok("bob@example.com")),
        MapRow("alias", "alice@example.com", expect: .notFound),
        MapRow("alias", "alice+x@example.com", expect: .notFound),
        MapRow("alias", "bob@example.com", expect: .notFound),
        MapRow("alias", "carol@example.net", expect: .notFound),
        MapRow("alias", "loop@example.com", expect: .notFound),
        MapRow("alias", "loop+x@example.com", expect: .notFound),
        MapRow("alias", "old@example.com", expect: .notFound),
        MapRow("alias", "old+x@example.com", expect: .notFound),
        MapRow("alias", "nobody@example.com", expect: .notFound),
        MapRow("alias", "sales@old.example", expect: .notFound),
        MapRow("alias", "sales@external.org", expect: .notFound),
        MapRow("alias", "example.com", expect: .notFound),
        MapRow("alias", "example.net", expect: .notFound),
        MapRow("alias", "@example.com", expect: .notFound),
        MapRow("alias", "sales@", expect: .notFound),
        MapRow("alias", "", expect: .notFound),
        MapRow("alias", latin1AliasKey, expect: .notFound),
        MapRow("alias", "sales+\u{0}@example.com", expect: .notFound),
        MapRow("alias", "\u{0}sales@example.com", expect: .notFound),
        MapRow("alias", longLocalPart("sales+", count: 99_970) + "@example.com",
               expect: .ok(longLocalPart("alice+", count: 99_970) + "@example.com")),
        MapRow("alias", longLocalPart("sales+", count: 99_990) + "@example.com", expect: .notFound),
        MapRow("alias", longLocalPart("team+", count: 200_000) + "@example.com", expect: .notFound),
        MapRow("alias", "sales+x@example.com", config: policyConfig(delimiter: ""), expect: .notFound),
        MapRow("alias", "sales-x@example.com", config: policyConfig(delimiter: "+-"), expect: .ok("alice-x@example.com")),
        MapRow("alias", "sales-x@example.com", expect: .notFound),
    ]

    static let domainRows: [MapRow] = [
        MapRow("domain", "example.com", expect: .ok("example.com")),
        MapRow("domain", "EXAMPLE.COM", expect: .ok("example.com")),
        MapRow("domain", "example.com.", expect: .ok("example.com")),
        MapRow("domain", "example.net", expect: .ok("example.net")),
        MapRow("domain", "old.example", expect: .notFound),
        MapRow("domain", "external.org", expect: .notFound),
        MapRow("domain", "sub.example.com", expect: .notFound),
        MapRow("domain", "alice@example.com", expect: .notFound),
        MapRow("domain", "", expect: .notFound),
    ]

    static let mailboxRows: [MapRow] = [
        MapRow("mailbox", "alice@example.com", expect: .ok("alice@example.com")),
        MapRow("mailbox", "Alice@Example.COM", expect: .ok("alice@example.com")),
        MapRow("mailbox", "alice+tag@example.com", expect: .ok("alice@example.com")),
        MapRow("mailbox", "dave@example.net", expect: .ok("dave@example.net")),
        MapRow("mailbox", "sales@example.com", expect: .ok("sales@example.com")),
        MapRow("mailbox", "\"john doe\"@example.com", expect: .ok("john doe@example.com")),
        MapRow("mailbox", "nobody@example.com", expect: .notFound),
        MapRow("mailbox", "old@example.com", expect: .notFound),
        MapRow("mailbox", "alice@external.org", expect: .notFound),
        MapRow("mailbox", "alice@old.example", expect: .notFound),
        MapRow("mailbox", "example.com", expect: .notFound),
        MapRow("mailbox", "", expect: .notFound),
        MapRow("mailbox", "alice+\u{0}@example.com", expect: .notFound),
        MapRow("mailbox", longLocalPart("alice+", count: 200_000) + "@example.com", expect: .ok("alice@example.com")),
        MapRow("mailbox", "alice+tag@example.com", config: policyConfig(delimiter: ""), expect: .notFound),
    ]

    static let unknownMapRows: [MapRow] = [
        MapRow("virtual", "sales@example.com", expect: .perm("unknown map virtual")),
        MapRow("ALIAS", "sales@example.com", expect: .perm("unknown map ALIAS")),
        MapRow("", "sales@example.com", expect: .perm("unknown map")),
        MapRow("virtual\u{0}", "sales@example.com", expect: .perm("unknown map")),
        MapRow("virtual map", "sales@example.com", expect: .perm("unknown map")),
        MapRow(String(repeating: "m", count: 65), "sales@example.com", expect: .perm("unknown map")),
        MapRow(String(repeating: "m", count: 64), "sales@example.com",
               expect: .perm("unknown map " + String(repeating: "m", count: 64))),
        MapRow(String(repeating: "m", count: 200_000), "sales@example.com", expect: .perm("unknown map")),
        MapRow("virtual\u{7F}", "sales@example.com", expect: .perm("unknown map")),
        MapRow("vïrtual", "sales@example.com", expect: .perm("unknown map")),
    ]

    static var allRows: [MapRow] { aliasRows + domainRows + mailboxRows + unknownMapRows }
}

/// `sales@example.com` with the `a` replaced by the invalid UTF-8 byte 0xE1,
/// decoded as the socketmap decoder does.
let latin1AliasKey = String(decoding: Array("s".utf8) + [0xE1] + Array("les@example.com".utf8), as: UTF8.self)

@Suite struct SocketmapLookupTests {
    @Test(arguments: MapTable.aliasRows)
    func aliasMapAnswersRow(_ row: MapRow) {
        #expect(Harness(config: row.config).lookup(map: row.map, key: row.key) == row.expected)
    }

    @Test(arguments: MapTable.domainRows)
    func domainMapAnswersRow(_ row: MapRow) {
        #expect(Harness(config: row.config).lookup(map: row.map, key: row.key) == row.expected)
    }

    @Test(arguments: MapTable.mailboxRows)
    func mailboxMapAnswersRow(_ row: MapRow) {
        #expect(Harness(config: row.config).lookup(map: row.map, key: row.key) == row.expected)
    }

    @Test(arguments: MapTable.unknownMapRows)
    func unknownMapAnswersPerm(_ row: MapRow) {
        #expect(Harness(config: row.config).lookup(map: row.map, key: row.key) == row.expected)
    }

    @Test(arguments: ["alias", "domain", "mailbox", "virtual"])
    func missingSnapshotAnswersTemp(_ map: String) {
        let resolver = Harness(snapshot: nil).resolver
        let reply = resolver.lookup(SocketmapRequest(name: map, key: "alice@example.com"))
        #expect(reply == .decided(.temp("database snapshot not loaded")))
    }

    @Test(arguments: MapTable.aliasRows.filter { $0.expected != .notFound })
    func aliasTargetIsNotAliasAgain(_ row: MapRow) throws {
        guard case .ok(let target) = row.expected else { return }
        let harness = Harness(config: row.config)
        #expect(harness.lookup(map: "alias", key: target) == .notFound)
    }

    @Test func aliasEncodesNetstring() {
        let reply = Harness().lookup(map: "alias", key: "sales@example.com")
        #expect(reply?.encoded == Array("20:OK alice@example.com,".utf8))
    }

    @Test func aliasExtensionEncodesNetstring() {
        let reply = Harness().lookup(map: "alias", key: "sales+x@example.com")
        #expect(reply?.encoded == Array("22:OK alice+x@example.com,".utf8))
    }

    @Test func notFoundEncodesNetstring() {
        let reply = Harness().lookup(map: "alias", key: "alice@example.com")
        #expect(reply?.encoded == Array("9:NOTFOUND ,".utf8))
    }

    @Test func domainEncodesNetstring() {
        let reply = Harness().lookup(map: "domain", key: "EXAMPLE.COM")
        #expect(reply?.encoded == Array("14:OK example.com,".utf8))
    }

    @Test func aliasNeedsNoIdentityLookup() {
        let resolver = Harness().resolver
        let reply = resolver.lookup(SocketmapRequest(name: "alias", key: "sales+x@example.com"))
        #expect(reply == .decided(.ok("alice+x@example.com")))
    }

    @Test func mailboxMissNeedsEmailKey() {
        let resolver = Harness().resolver
        let reply = resolver.lookup(SocketmapRequest(name: "mailbox", key: "Alice+Tag@Example.COM"))
        #expect(reply == .needs(.email("alice@example.com")))
    }

    @Test func mailboxCachedAnswerDecidesAtOnce() {
        let directory = TableDirectory(cached: [.email("alice@example.com"): .found(Fixture.users[0])])
        let resolver = Harness(directory: directory).resolver
        let reply = resolver.lookup(SocketmapRequest(name: "mailbox", key: "alice@example.com"))
        #expect(reply == .decided(.ok("alice@example.com")))
    }

    @Test func mailboxCachedNotFoundDecidesAtOnce() {
        let directory = TableDirectory(cached: [.email("nobody@example.com"): .notFound])
        let resolver = Harness(directory: directory).resolver
        let reply = resolver.lookup(SocketmapRequest(name: "mailbox", key: "nobody@example.com"))
        #expect(reply == .decided(.notFound))
    }

    @Test func mailboxProviderFailureAnswersTemp() {
        let harness = Harness(directory: TableDirectory(unavailable: [.email("alice@example.com")]))
        #expect(harness.lookup(map: "mailbox", key: "alice@example.com") == .temp("identity provider unavailable"))
    }

    @Test func mailboxFetchedFailureAnswersTemp() {
        let resolver = Harness().resolver
        let fetched: FetchedIdentities = [.email("nobody@example.com"): .failure(.overloaded)]
        let reply = resolver.lookup(SocketmapRequest(name: "mailbox", key: "nobody@example.com"), fetched: fetched)
        #expect(reply == .decided(.temp("identity provider unavailable")))
    }

    @Test func mailboxAliasIgnoresProviderFailure() {
        let harness = Harness(directory: TableDirectory(unavailable: [.email("sales@example.com")]))
        #expect(harness.lookup(map: "mailbox", key: "sales@example.com") == .ok("sales@example.com"))
    }

    @Test(arguments: MapTable.allRows)
    func everyReplyEncodesOneNetstring(_ row: MapRow) throws {
        let reply = try #require(Harness(config: row.config).lookup(map: row.map, key: row.key))
        let text: String
        switch reply {
        case .ok(let data): text = data
        case .notFound: text = ""
        case .temp(let reason), .timeout(let reason), .perm(let reason): text = reason
        }
        if case .ok = reply {
            #expect(!text.isEmpty)
        }

        // Encoding stops the process on a NUL byte or an oversized payload,
        // so check both before encoding.
        try #require(!text.utf8.contains(0))
        try #require(text.utf8.count < SocketmapReply.maxPayloadSize - 8)
        let bytes = reply.encoded
        let colon = try #require(bytes.firstIndex(of: UInt8(ascii: ":")))
        let length = try #require(Int(String(decoding: bytes[..<colon], as: UTF8.self)))
        #expect(bytes.last == UInt8(ascii: ","))
        #expect(length == bytes.count - colon - 2)
    }
}
