// The request head parser of the metrics endpoint, fed whole and in pieces.
import Testing
@testable import Metrics

@Test func headParsesRequestLineAndHeaders() {
    let bytes = Array("GET /metrics?x=1 HTTP/1.1\r\nHost: localhost:9464\r\nAccept:  */*  \r\n\r\n".utf8)
    guard case .complete(let head) = HTTPRequestHead.parse(bytes) else {
        Issue.record("head not complete")
        return
    }
    #expect(head.method == "GET")
    #expect(head.path == "/metrics")
    #expect(head.version == "HTTP/1.1")
    #expect(head.headers.map(\.name) == ["host", "accept"])
    #expect(head.headers.map(\.value) == ["localhost:9464", "*/*"])
}

@Test func headWaitsForEveryPrefix() {
    let bytes = Array("GET /healthz HTTP/1.0\r\nUser-Agent: t\r\n\r\n".utf8)
    for end in 0..<bytes.count {
        #expect(HTTPRequestHead.parse(Array(bytes[..<end])) == .needMore, "prefix of \(end) bytes")
    }
    #expect(HTTPRequestHead.parse(bytes) != .needMore)
}

@Test func headAcceptsBareNewlines() {
    let result = HTTPRequestHead.parse(Array("GET /readyz HTTP/1.0\n\n".utf8))
    #expect(result == .complete(HTTPRequestHead(method: "GET", path: "/readyz", version: "HTTP/1.0", headers: [])))
}

@Test(arguments: [
    ("GET /metrics HTTP/2.0\r\n\r\n", HTTPRequestError.unsupportedVersion),
    ("GET /metrics\r\n\r\n", .malformedRequestLine),
    ("GET metrics HTTP/1.1\r\n\r\n", .malformedRequestLine),
    ("GET  /metrics HTTP/1.1\r\n\r\n", .malformedRequestLine),
    ("GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n", .malformedHeader),
    ("GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n", .malformedHeader),
])
func headRejectsMalformedInput(text: String, error: HTTPRequestError) {
    #expect(HTTPRequestHead.parse(Array(text.utf8)) == .invalid(error))
}

@Test func headRejectsOversizedHead() {
    let filler = Array(repeating: UInt8(ascii: "a"), count: HTTPRequestHead.maxSize)
    let unfinished = Array("GET /metrics HTTP/1.1\r\nX: ".utf8) + filler
    let finished = unfinished + Array("\r\n\r\n".utf8)
    #expect(HTTPRequestHead.parse(unfinished) == .invalid(.headTooLarge))
    #expect(HTTPRequestHead.parse(finished) == .invalid(.headTooLarge))
}
