// Routing and reply encoding of the metrics endpoint, and one real loopback
// server that serves a scrape.
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import Metrics

private func head(_ method: String, _ path: String) -> HTTPRequestHead {
    HTTPRequestHead(method: method, path: path, version: "HTTP/1.1", headers: [])
}

@Test func routesAnswerKnownPaths() {
    let registry = MetricsRegistry()
    _ = registry.counter("mailcloak_test_total", help: "Test.")
    let routes = MetricsRoutes(registry: registry) { nil }

    let metrics = routes.respond(to: head("GET", "/metrics"))
    #expect(metrics.status == 200)
    #expect(metrics.contentType == "text/plain; version=0.0.4; charset=utf-8")
    #expect(metrics.body == "# HELP mailcloak_test_total Test.\n# TYPE mailcloak_test_total counter\nmailcloak_test_total 0\n")
    #expect(routes.respond(to: head("GET", "/healthz")) == HTTPResponse(status: 200, body: "ok\n"))
    #expect(routes.respond(to: head("GET", "/readyz")) == HTTPResponse(status: 200, body: "ready\n"))
}

@Test func routesRejectOtherPathsAndMethods() {
    let routes = MetricsRoutes(registry: MetricsRegistry()) { nil }
    #expect(routes.respond(to: head("GET", "/")).status == 404)
    #expect(routes.respond(to: head("POST", "/metrics")).status == 405)
    #expect(routes.respond(to: head("HEAD", "/healthz")).status == 405)
}

@Test func routesReportNotReadyReason() {
    let routes = MetricsRoutes(registry: MetricsRegistry()) { "no database snapshot loaded" }
    #expect(routes.respond(to: head("GET", "/readyz")) == HTTPResponse(status: 503, body: "no database snapshot loaded\n"))
}

@Test func responseEncodesHeadersAndBody() {
    let text = String(decoding: HTTPResponse(status: 405, body: "no\n").encoded, as: UTF8.self)
    let expected = "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
        + "Content-Length: 3\r\nAllow: GET\r\nConnection: close\r\n\r\nno\n"
    #expect(text == expected)
}

/// Sends `request` to 127.0.0.1:`port` and returns everything the server writes before it closes.
private func exchange(_ request: String, port: UInt16) throws -> String {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(descriptor >= 0)
    defer { close(descriptor) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    try #require(connected == 0)
    let bytes = Array(request.utf8)
    try #require(send(descriptor, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count)
    var received: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = recv(descriptor, &chunk, chunk.count, 0)
        if count <= 0 { break }
        received += chunk[..<count]
    }
    return String(decoding: received, as: UTF8.self)
}

@Test func serverAnswersOverLoopback() throws {
    let registry = MetricsRegistry()
    registry.counter("mailcloak_test_total", help: "Test.").increment()
    let server = try MetricsHTTPServer(host: "127.0.0.1", port: 0, routes: MetricsRoutes(registry: registry) { nil })
    server.start()
    defer { server.stop() }

    let metrics = try exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port)
    let missing = try exchange("GET /nothing HTTP/1.0\r\n\r\n", port: server.port)
    let garbage = try exchange("BLAH\r\n\r\n", port: server.port)

    #expect(metrics.hasPrefix("HTTP/1.1 200 OK\r\n"))
    #expect(metrics.hasSuffix("\r\n\r\n# HELP mailcloak_test_total Test.\n# TYPE mailcloak_test_total counter\nmailcloak_test_total 1\n"))
    #expect(missing.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
    #expect(garbage.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
}

@Test func serverClosesStalledRequestAfterDeadline() throws {
    let server = try MetricsHTTPServer(
        host: "127.0.0.1", port: 0, routes: MetricsRoutes(registry: MetricsRegistry()) { nil }, readTimeout: 0.2)
    server.start()
    defer { server.stop() }

    let reply = try exchange("GET /metrics HTTP/1.1\r\n", port: server.port)
    #expect(reply.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
}

@Test func serverRejectsInvalidAddress() {
    #expect(throws: MetricsServerError.self) {
        _ = try MetricsHTTPServer(host: "not-an-address", port: 0, routes: MetricsRoutes(registry: MetricsRegistry()) { nil })
    }
}

@Test func serverRefusesConnectionsAfterStop() throws {
    let server = try MetricsHTTPServer(host: "127.0.0.1", port: 0, routes: MetricsRoutes(registry: MetricsRegistry()) { nil })
    server.start()
    server.stop()

    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(descriptor >= 0)
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = server.port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    let code = errno
    #expect(connected == -1)
    #expect(code == ECONNREFUSED)
}
