import Testing

import Socketmap

struct RequestCase: CustomTestStringConvertible, Sendable {
    var label: String
    var payload: [UInt8]
    var expected: SocketmapRequest?
    var testDescription: String { label }
}

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

private let requestCases: [RequestCase] = [
    .init(
        label: "alias query", payload: bytes("alias alice@example.com"),
        expected: .init(name: "alias", key: "alice@example.com")),
    .init(
        label: "key with spaces", payload: bytes("alias \"john doe\"@example.com"),
        expected: .init(name: "alias", key: "\"john doe\"@example.com")),
    .init(label: "empty key", payload: bytes("alias "), expected: .init(name: "alias", key: "")),
    .init(label: "two spaces", payload: bytes("alias  x"), expected: .init(name: "alias", key: " x")),
    .init(label: "empty name", payload: bytes(" alice@example.com"), expected: .init(name: "", key: "alice@example.com")),
    .init(
        label: "case kept", payload: bytes("mailbox Alice+Tag@Example.COM"),
        expected: .init(name: "mailbox", key: "Alice+Tag@Example.COM")),
    .init(label: "bare domain key", payload: bytes("alias example.net"), expected: .init(name: "alias", key: "example.net")),
    .init(
        label: "invalid utf8 replaced", payload: bytes("alias a") + [0xFF] + bytes("@example.com"),
        expected: .init(name: "alias", key: "a\u{FFFD}@example.com")),
    .init(
        label: "utf8 key", payload: bytes("alias jos\u{E9}@example.com"),
        expected: .init(name: "alias", key: "jos\u{E9}@example.com")),
    .init(label: "no space", payload: bytes("alias"), expected: nil),
    .init(label: "empty payload", payload: [], expected: nil),
    .init(label: "tab is no separator", payload: bytes("alias\tx"), expected: nil),
]

@Test(arguments: requestCases)
func requestSplitsAtFirstSpace(_ testCase: RequestCase) {
    let request = testCase.payload.withUnsafeBytes { SocketmapRequest(payload: $0) }
    #expect(request == testCase.expected)
}
