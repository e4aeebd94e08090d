
@testable import PolicyProtocol
import TestSupport
import Testing

private let roomyLimits = PolicyLimits(maxLineLength: 4096, maxAttributes: 100, maxRequestSize: 65536)

/// The 29 attributes Postfix 3.7.11 sends for a RCPT from an authenticated client, in its order.
private let postfix37Request = """
    request=smtpd_access_policy
    protocol_state=RCPT
    protocol_name=ESMTP
    client_address=192.0.2.10
    client_name=mail.client.example
    client_port=52344
    reverse_client_name=mail.client.example
    server_address=192.0.2.1
    server_port=587
    helo_name=client.example
    sender=alice@example.com
    recipient=Bob+Tag@Example.ORG
    recipient_count=0
    queue_id=
    instance=1a2b.65f0c3d1.9e4f7.0
    size=0
    etrn_domain=
    stress=
    sasl_method=XOAUTH2
    sasl_username=alice
    sasl_sender=
    ccert_subject=
    ccert_issuer=
    ccert_fingerprint=
    ccert_pubkey_fingerprint=
    encryption_protocol=TLSv1.3
    encryption_cipher=TLS_AES_256_GCM_SHA384
    encryption_keysize=256
    policy_context=


    """

private let postfix37Decoded = PolicyRequest(
    request: "smtpd_access_policy", protocolState: "RCPT", sender: "alice@example.com",
    recipient: "Bob+Tag@Example.ORG", saslMethod: "XOAUTH2", saslUsername: "alice",
    clientAddress: "192.0.2.10", queueID: "", attributeCount: 29)

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

// MARK: - Valid requests

struct ValidRequestCase: CustomTestStringConvertible, Sendable {
    var label: String
    var input: [UInt8]
    var expected: PolicyRequest
    var testDescription: String { label }
}

private let validCases: [ValidRequestCase] = [
    .init(label: "postfix 3.7 request", input: bytes(postfix37Request), expected: postfix37Decoded),
    .init(
        label: "value containing equals signs",
        input: bytes("request=smtpd_access_policy\nsender=SRS0=HHH=TT=example.org=bounce@lists.example.com\n\n"),
        expected: .init(
            request: "smtpd_access_policy", sender: "SRS0=HHH=TT=example.org=bounce@lists.example.com",
            attributeCount: 2)),
    .init(
        label: "null sender is empty",
        input: bytes("request=smtpd_access_policy\nsender=\nrecipient=alice@example.com\n\n"),
        expected: .init(
            request: "smtpd_access_policy", sender: "", recipient: "alice@example.com", attributeCount: 3)),
    .init(
        label: "absent attributes keep defaults",
        input: bytes("protocol_name=ESMTP\n\n"),
        expected: .init(attributeCount: 1)),
    .init(
        label: "crlf line ends",
        input: bytes("request=smtpd_access_policy\r\nrecipient=alice@example.com\r\nsize=10\r\n\r\n"),
        expected: .init(request: "smtpd_access_policy", recipient: "alice@example.com", attributeCount: 3)),
    .init(
        label: "only one carriage return stripped",
        input: bytes("sasl_username=alice\r\r\n\n"),
        expected: .init(saslUsername: "alice\r", attributeCount: 1)),
    .init(
        label: "quoted local part arrives unquoted",
        input: bytes("recipient=john doe@example.com\n\n"),
        expected: .init(recipient: "john doe@example.com", attributeCount: 1)),
    .init(
        label: "utf8 address",
        input: bytes("recipient=jos\u{E9}@b\u{FC}cher.example\n\n"),
        expected: .init(recipient: "jos\u{E9}@b\u{FC}cher.example", attributeCount: 1)),
    .init(
        label: "invalid utf8 replaced",
        input: bytes("sender=a") + [0xFF, 0xC3] + bytes("@example.com\n\n"),
        expected: .init(sender: "a\u{FFFD}\u{FFFD}@example.com", attributeCount: 1)),
    .init(
        label: "names are case sensitive",
        input: bytes("Recipient=alice@example.com\nSENDER=bob@example.com\n\n"),
        expected: .init(attributeCount: 2)),
    .init(
        label: "name with trailing space is unknown",
        input: bytes("recipient =alice@example.com\n\n"),
        expected: .init(attributeCount: 1)),
    .init(
        label: "unknown attributes counted and repeatable",
        input: bytes("x=1\nx=2\ntls_sni=mx.example.com\ncompatibility_level=3.6\nqueue_id=4Xyz1\n\n"),
        expected: .init(queueID: "4Xyz1", attributeCount: 5)),
    .init(
        label: "every kept attribute",
        input: bytes(
            "request=r\nprotocol_state=MAIL\nsender=s\nrecipient=t\nsasl_method=PLAIN\nsasl_username=app1\n"
                + "client_address=2001:db8::1\nqueue_id=q\n\n"),
        expected: .init(
            request: "r", protocolState: "MAIL", sender: "s", recipient: "t", saslMethod: "PLAIN",
            saslUsername: "app1", clientAddress: "2001:db8::1", queueID: "q", attributeCount: 8)),
]

@Test(arguments: validCases)
func decoderReadsWholeRequest(_ testCase: ValidRequestCase) {
    let result = feed([testCase.input[...]], limits: roomyLimits)
    #expect(result.requests == [testCase.expected])
    #expect(result.error == nil)
    #expect(result.leftover == [])
}

@Test(arguments: validCases)
func decoderReadsRequestSplitAnywhere(_ testCase: ValidRequestCase) {
    for chunks in everySplit(testCase.input) {
        let result = feed(chunks, limits: roomyLimits)
        #expect(result.requests == [testCase.expected], "split at \(chunks[0].count)")
        #expect(result.error == nil, "split at \(chunks[0].count)")
        #expect(result.leftover == [], "split at \(chunks[0].count)")
    }
}

@Test(arguments: validCases)
func decoderReadsRequestByteByByte(_ testCase: ValidRequestCase) {
    var decoder = PolicyRequestDecoder(limits: roomyLimits)
    let result = feed(byteByByte(testCase.input), into: &decoder)
    #expect(result.requests == [testCase.expected])
    #expect(decoder.bytesScanned == testCase.input.count)
}

@Test func decoderReadsRandomlyChunkedStream() {
    var generator = SplitMix64(state: 0x5EED)
    var stream: [UInt8] = []
    var expected: [PolicyRequest] = []
    for index in 0..<200 {
        let testCase = validCases[index % validCases.count]
        stream += testCase.input
        expected.append(testCase.expected)
    }

    for round in 0..<20 {
        var decoder = PolicyRequestDecoder(limits: roomyLimits)
        let chunks = randomChunks(stream, maxChunk: 500, using: &generator)
        let result = feed(chunks, into: &decoder)
        #expect(result.requests == expected, "round \(round)")
        #expect(result.error == nil, "round \(round)")
        #expect(result.leftover == [], "round \(round)")
        #expect(decoder.bytesScanned == stream.count, "round \(round)")
    }
}

@Test func decoderLeavesNextRequestBytes() {
    let input = bytes("request=smtpd_access_policy\n\nrequest=smtpd_acc")
    let result = feed([input[...]], limits: roomyLimits)
    #expect(result.requests == [.init(request: "smtpd_access_policy", attributeCount: 1)])
    #expect(result.leftover == bytes("request=smtpd_acc"))
}

@Test func decoderReportsConsumedBytes() throws {
    let first = bytes("sender=\n\n")
    let input = first + bytes("sender=x\n\n")
    var decoder = PolicyRequestDecoder(limits: roomyLimits)
    let decoded = try input.withUnsafeBytes { buffer throws(PolicyParseError) in try decoder.next(in: buffer) }
    #expect(decoded?.consumed == first.count)
    #expect(decoded?.request.sender == "")
}

@Test func decoderReturnsNilForEmptyBuffer() throws {
    var decoder = PolicyRequestDecoder(limits: roomyLimits)
    let decoded = try [UInt8]().withUnsafeBytes { buffer throws(PolicyParseError) in try decoder.next(in: buffer) }
    #expect(decoded == nil)
}

// MARK: - Malformed requests

struct InvalidRequestCase: CustomTestStringConvertible, Sendable {
    var label: String
    var input: [UInt8]
    var expected: PolicyParseError
    var testDescription: String { label }
}

private let invalidCases: [InvalidRequestCase] = [
    .init(label: "line without equals", input: bytes("request=x\nrecipient\n\n"), expected: .missingEquals(line: 2)),
    .init(label: "empty name", input: bytes("=alice@example.com\n\n"), expected: .emptyName(line: 1)),
    .init(label: "empty name crlf", input: bytes("a=1\r\n=\r\n\r\n"), expected: .emptyName(line: 2)),
    .init(label: "nul in value", input: bytes("sender=a") + [0] + bytes("b\n\n"), expected: .nulByte(line: 1)),
    .init(label: "nul in name", input: bytes("a=1\nsen") + [0] + bytes("der=b\n\n"), expected: .nulByte(line: 2)),
    .init(label: "blank line first", input: bytes("\n"), expected: .emptyRequest),
    .init(label: "crlf blank line first", input: bytes("\r\n"), expected: .emptyRequest),
    .init(
        label: "duplicate recipient",
        input: bytes("recipient=alice@example.com\nrecipient=bob@example.org\n\n"),
        expected: .duplicateAttribute(name: "recipient", line: 2)),
    .init(
        label: "duplicate empty sender",
        input: bytes("request=x\nsender=\nsize=1\nsender=alice@example.com\n\n"),
        expected: .duplicateAttribute(name: "sender", line: 4)),
    .init(
        label: "duplicate sasl username",
        input: bytes("sasl_username=alice\nsasl_username=bob\n\n"),
        expected: .duplicateAttribute(name: "sasl_username", line: 2)),
]

@Test(arguments: invalidCases)
func decoderRejectsMalformedRequest(_ testCase: InvalidRequestCase) {
    let result = feed([testCase.input[...]], limits: roomyLimits)
    #expect(result.requests == [])
    #expect(result.error == testCase.expected)
}

@Test(arguments: invalidCases)
func decoderRejectsMalformedSplitAnywhere(_ testCase: InvalidRequestCase) {
    for chunks in everySplit(testCase.input) {
        let result = feed(chunks, limits: roomyLimits)
        #expect(result.error == testCase.expected, "split at \(chunks[0].count)")
    }
}

@Test func decoderStartsOverAfterError() throws {
    var decoder = PolicyRequestDecoder(limits: roomyLimits)
    let broken = feed([bytes("sender=a\nbroken\n\n")[...]], into: &decoder)
    #expect(broken.error == .missingEquals(line: 2))

    let next = feed([bytes("sender=b\n\n")[...]], into: &decoder)
    #expect(next.requests == [.init(sender: "b", attributeCount: 1)])
    #expect(next.error == nil)
}

// MARK: - Limits

private let tightLimits = PolicyLimits(maxLineLength: 32, maxAttributes: 4, maxRequestSize: 100)

@Test func decoderAcceptsLineAtLengthLimit() {
    let line = "sender=" + String(repeating: "a", count: 25)
    let result = feed([bytes(line + "\n\n")[...]], limits: tightLimits)
    #expect(result.requests == [.init(sender: String(repeating: "a", count: 25), attributeCount: 1)])
}

@Test func decoderRejectsLongLineAtFirstExtraByte() {
    let input = bytes("sender=" + String(repeating: "a", count: 40))
    let result = feed(byteByByte(input), limits: tightLimits)
    #expect(result.error == .lineTooLong(limit: 32))
    #expect(result.bufferedAtError == 33)
}

@Test func decoderRejectsLongLineAfterShortOnes() {
    let input = bytes("a=1\nb=2\n" + String(repeating: "c", count: 40))
    let result = feed(byteByByte(input), limits: tightLimits)
    #expect(result.error == .lineTooLong(limit: 32))
    #expect(result.bufferedAtError == 8 + 33)
}

@Test func decoderCountsCarriageReturnInLineLength() {
    let line = "sender=" + String(repeating: "a", count: 25)
    let result = feed([bytes(line + "\r\n\r\n")[...]], limits: tightLimits)
    #expect(result.error == .lineTooLong(limit: 32))
}

@Test func decoderRejectsMegabyteLineEarly() {
    var decoder = PolicyRequestDecoder(limits: roomyLimits)
    let line = bytes("sender=") + [UInt8](repeating: 0x61, count: 1 << 20)
    let result = feed([line[...]], into: &decoder)
    #expect(result.error == .lineTooLong(limit: 4096))
    #expect(decoder.bytesScanned == 4097)
}

@Test func decoderRejectsMegabyteLineInChunks() {
    let line = bytes("sender=") + [UInt8](repeating: 0x61, count: 1 << 20)
    let chunks = stride(from: 0, to: line.count, by: 1000).map { line[$0..<min($0 + 1000, line.count)] }
    let result = feed(chunks, limits: roomyLimits)
    #expect(result.error == .lineTooLong(limit: 4096))
    #expect(result.bufferedAtError == 5000)
}

@Test func decoderAcceptsAttributeCountAtLimit() {
    let result = feed([bytes("a=1\nb=2\nc=3\nd=4\n\n")[...]], limits: tightLimits)
    #expect(result.requests == [.init(attributeCount: 4)])
}

@Test func decoderRejectsAttributeOverLimit() {
    let result = feed([bytes("a=1\nb=2\nc=3\nd=4\ne=5\n\n")[...]], limits: tightLimits)
    #expect(result.error == .tooManyAttributes(limit: 4))
}

@Test func decoderAcceptsRequestAtSizeLimit() {
    // Three lines of 32 bytes with their newlines, then `d=` and the blank line: 100 bytes.
    let line = String(repeating: "x", count: 29)
    let input = bytes("a=\(line)\nb=\(line)\nc=\(line)\nd=\n\n")
    #expect(input.count == 100)
    let result = feed([input[...]], limits: tightLimits)
    #expect(result.requests.count == 1)
    #expect(result.error == nil)
}

@Test func decoderRejectsRequestOverSizeLimit() {
    let line = String(repeating: "x", count: 29)
    let input = bytes("a=\(line)\nb=\(line)\nc=\(line)\nd=x\n\n")
    let result = feed(byteByByte(input), limits: tightLimits)
    #expect(result.error == .requestTooLarge(limit: 100))
    #expect(result.bufferedAtError == 100)
}

@Test func decoderSizeLimitIgnoresNextRequest() {
    let line = String(repeating: "x", count: 29)
    let first = bytes("a=\(line)\nb=\(line)\nc=\(line)\nd=\n\n")
    let result = feed([(first + first)[...]], limits: tightLimits)
    #expect(result.requests.count == 2)
    #expect(result.error == nil)
}
