
@testable import Socketmap
import TestSupport
import Testing

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

struct ValidNetstringCase: CustomTestStringConvertible, Sendable {
    var label: String
    var input: [UInt8]
    var payload: [UInt8]
    var testDescription: String { label }
}

private let validCases: [ValidNetstringCase] = [
    .init(label: "alias query", input: bytes("23:alias alice@example.com,"), payload: bytes("alias alice@example.com")),
    .init(label: "empty payload", input: bytes("0:,"), payload: []),
    .init(label: "payload with separators", input: bytes("7:a:b,c d,"), payload: bytes("a:b,c d")),
    .init(label: "leading zeros", input: bytes("003:abc,"), payload: bytes("abc")),
    .init(label: "binary payload", input: bytes("4:") + [0, 0xFF, 0x0A, 0x2C] + bytes(","), payload: [0, 0xFF, 0x0A, 0x2C]),
    .init(
        label: "payload at limit", input: bytes("100:") + [UInt8](repeating: 0x78, count: 100) + bytes(","),
        payload: [UInt8](repeating: 0x78, count: 100)),
    .init(
        label: "quoted local part key", input: bytes("28:alias \"john doe\"@example.com,"),
        payload: bytes("alias \"john doe\"@example.com")),
]

private let limit = 100

@Test(arguments: validCases)
func decoderReadsWholeNetstring(_ testCase: ValidNetstringCase) {
    let result = feed([testCase.input[...]], maxLength: limit)
    #expect(result.payloads == [testCase.payload])
    #expect(result.error == nil)
    #expect(result.leftover == [])
}

@Test(arguments: validCases)
func decoderReadsNetstringSplitAnywhere(_ testCase: ValidNetstringCase) {
    for chunks in everySplit(testCase.input) {
        let result = feed(chunks, maxLength: limit)
        #expect(result.payloads == [testCase.payload], "split at \(chunks[0].count)")
        #expect(result.error == nil, "split at \(chunks[0].count)")
        #expect(result.leftover == [], "split at \(chunks[0].count)")
    }
}

@Test(arguments: validCases)
func decoderReadsNetstringByteByByte(_ testCase: ValidNetstringCase) {
    let result = feed(byteByByte(testCase.input), maxLength: limit)
    #expect(result.payloads == [testCase.payload])
    #expect(result.leftover == [])
}

@Test func decoderReadsRandomlyChunkedStream() {
    var generator = SplitMix64(state: 0xC0FFEE)
    var stream: [UInt8] = []
    var expected: [[UInt8]] = []
    for index in 0..<300 {
        let testCase = validCases[index % validCases.count]
        stream += testCase.input
        expected.append(testCase.payload)
    }

    for round in 0..<20 {
        let chunks = randomChunks(stream, maxChunk: 500, using: &generator)
        let result = feed(chunks, maxLength: limit)
        #expect(result.payloads == expected, "round \(round)")
        #expect(result.error == nil, "round \(round)")
        #expect(result.leftover == [], "round \(round)")
    }
}

@Test func decoderReturnsPayloadRangeAndConsumed() throws {
    let input = bytes("3:abc,5:")
    var decoder = NetstringDecoder(maxLength: limit)
    let decoded = try input.withUnsafeBytes { buffer throws(NetstringError) in try decoder.next(in: buffer) }
    #expect(decoded?.payload == 2..<5)
    #expect(decoded?.consumed == 6)
}

@Test func decoderLeavesNextNetstringBytes() {
    let result = feed([bytes("1:a,2:b")[...]], maxLength: limit)
    #expect(result.payloads == [bytes("a")])
    #expect(result.leftover == bytes("2:b"))
}

@Test func decoderWaitsForTerminator() throws {
    let input = bytes("3:abc")
    var decoder = NetstringDecoder(maxLength: limit)
    let decoded = try input.withUnsafeBytes { buffer throws(NetstringError) in try decoder.next(in: buffer) }
    #expect(decoded == nil)
}

// MARK: - Malformed netstrings

struct InvalidNetstringCase: CustomTestStringConvertible, Sendable {
    var label: String
    var input: [UInt8]
    var error: NetstringError
    /// Bytes that must have arrived when the decoder throws.
    var failsAt: Int
    var testDescription: String { label }
}

private let invalidCases: [InvalidNetstringCase] = [
    .init(label: "letter in length", input: bytes("1a:x,"), error: .invalidLengthDigit(0x61), failsAt: 2),
    .init(label: "space before length", input: bytes(" 3:abc,"), error: .invalidLengthDigit(0x20), failsAt: 1),
    .init(label: "negative length", input: bytes("-1:,"), error: .invalidLengthDigit(0x2D), failsAt: 1),
    .init(label: "policy request", input: bytes("request=x\n\n"), error: .invalidLengthDigit(0x72), failsAt: 1),
    .init(label: "empty length", input: bytes(":abc,"), error: .emptyLength, failsAt: 1),
    .init(label: "wrong terminator", input: bytes("3:abc;"), error: .missingTerminator(found: 0x3B), failsAt: 6),
    .init(label: "payload longer than length", input: bytes("2:abc,"), error: .missingTerminator(found: 0x63), failsAt: 5),
    .init(label: "newline terminator", input: bytes("3:abc\n"), error: .missingTerminator(found: 0x0A), failsAt: 6),
    .init(
        label: "length over limit", input: bytes("101:") + [UInt8](repeating: 0x78, count: 101) + bytes(","),
        error: .lengthExceedsLimit(length: 101, limit: 100), failsAt: 3),
    .init(
        label: "huge length fails at first digit over", input: bytes("99999999999999999999:"),
        error: .lengthExceedsLimit(length: 999, limit: 100), failsAt: 3),
    .init(label: "too many leading zeros", input: bytes("0001:a,"), error: .lengthTooLong(digits: 4), failsAt: 4),
]

@Test(arguments: invalidCases)
func decoderRejectsMalformedNetstring(_ testCase: InvalidNetstringCase) {
    let result = feed([testCase.input[...]], maxLength: limit)
    #expect(result.payloads == [])
    #expect(result.error == testCase.error)
}

@Test(arguments: invalidCases)
func decoderRejectsAtFirstBadByte(_ testCase: InvalidNetstringCase) {
    let result = feed(byteByByte(testCase.input), maxLength: limit)
    #expect(result.error == testCase.error)
    #expect(result.bufferedAtError == testCase.failsAt)
}

@Test(arguments: invalidCases)
func decoderRejectsMalformedSplitAnywhere(_ testCase: InvalidNetstringCase) {
    for chunks in everySplit(testCase.input) {
        let result = feed(chunks, maxLength: limit)
        #expect(result.error == testCase.error, "split at \(chunks[0].count)")
    }
}

@Test func decoderStartsOverAfterError() throws {
    var decoder = NetstringDecoder(maxLength: limit)
    let bad = bytes("x")
    let thrown = bad.withUnsafeBytes { buffer in
        Result { () throws(NetstringError) in try decoder.next(in: buffer) }
    }
    #expect(throws: NetstringError.invalidLengthDigit(0x78)) { try thrown.get() }

    let good = bytes("1:y,")
    let decoded = try good.withUnsafeBytes { buffer throws(NetstringError) in try decoder.next(in: buffer) }
    #expect(decoded?.payload == 2..<3)
}

@Test func decoderWithZeroLimitAcceptsEmpty() {
    let result = feed([bytes("0:,1:a,")[...]], maxLength: 0)
    #expect(result.payloads == [[]])
    #expect(result.error == .lengthExceedsLimit(length: 1, limit: 0))
}

@Test func decoderAtPostfixQueryLimit() {
    let payload = [UInt8](repeating: 0x61, count: 10000)
    let accepted = feed([(bytes("10000:") + payload + bytes(","))[...]], maxLength: 10000)
    #expect(accepted.payloads == [payload])
    let rejected = feed([bytes("10001:")[...]], maxLength: 10000)
    #expect(rejected.error == .lengthExceedsLimit(length: 10001, limit: 10000))
}
