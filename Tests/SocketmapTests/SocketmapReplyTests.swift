import Testing

import Socketmap

struct ReplyCase: CustomTestStringConvertible, Sendable {
    var reply: SocketmapReply
    var wire: String
    var testDescription: String { wire }
}

private let replyCases: [ReplyCase] = [
    .init(reply: .ok("alice@example.com"), wire: "20:OK alice@example.com,"),
    .init(reply: .ok("a b"), wire: "6:OK a b,"),
    .init(reply: .notFound, wire: "9:NOTFOUND ,"),
    .init(reply: .temp("database unavailable"), wire: "25:TEMP database unavailable,"),
    .init(reply: .temp(""), wire: "5:TEMP ,"),
    .init(reply: .timeout("identity provider"), wire: "25:TIMEOUT identity provider,"),
    .init(reply: .perm("unknown map"), wire: "16:PERM unknown map,"),
    .init(reply: .ok("jos\u{E9}@example.com"), wire: "20:OK jos\u{E9}@example.com,"),
]

@Test(arguments: replyCases)
func replyEncodesAsNetstring(_ testCase: ReplyCase) {
    #expect(testCase.reply.encoded == Array(testCase.wire.utf8))
}

@Test(arguments: replyCases)
func replyDecodesWithNetstringDecoder(_ testCase: ReplyCase) throws {
    let encoded = testCase.reply.encoded
    var decoder = NetstringDecoder(maxLength: SocketmapReply.maxPayloadSize)
    let decoded = try encoded.withUnsafeBytes { buffer throws(NetstringError) in try decoder.next(in: buffer) }
    #expect(decoded?.consumed == encoded.count)
}

@Test func replyAtPostfixLimitEncodes() {
    let data = String(repeating: "a", count: SocketmapReply.maxPayloadSize - 3)
    let encoded = SocketmapReply.ok(data).encoded
    #expect(encoded.prefix(7) == Array("100000:".utf8)[...])
    #expect(encoded.count == 100_008)
}

@Test func okWithEmptyDataStopsProcess() async {
    await #expect(processExitsWith: .failure) {
        _ = SocketmapReply.ok("").encoded
    }
}

@Test func replyOverPostfixLimitStopsProcess() async {
    await #expect(processExitsWith: .failure) {
        _ = SocketmapReply.ok(String(repeating: "a", count: 99_998)).encoded
    }
}

@Test func replyWithNulByteStopsProcess() async {
    await #expect(processExitsWith: .failure) {
        _ = SocketmapReply.ok("alice\u{0}@example.com").encoded
    }
}
