// The replies of the metrics endpoint and the routing that picks them:
// GET /metrics, /healthz and /readyz; 404 for another path and 405 for
// another method. Every reply closes the connection.

/// A status, a content type and a body; written with `Content-Length` and `Connection: close`.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: String

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// The reply for a rejected request head.
    public init(error: HTTPRequestError) {
        self.init(status: error.status, body: "\(error)\n")
    }

    /// The status line, headers and body as bytes.
    public var encoded: [UInt8] {
        let bodyBytes = Array(body.utf8)
        var head = "HTTP/1.1 \(status) \(Self.reasonPhrase(status))\r\n"
        head += "Content-Type: \(contentType)\r\n"
        head += "Content-Length: \(bodyBytes.count)\r\n"
        if status == 405 { head += "Allow: GET\r\n" }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + bodyBytes
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 431: "Request Header Fields Too Large"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Error"
        }
    }
}

/// The routing of the endpoint's three paths.
public struct MetricsRoutes: Sendable {
    let registry: MetricsRegistry
    /// Returns nil when the daemon is ready, else the reason it is not.
    let notReadyReason: @Sendable () -> String?

    public init(registry: MetricsRegistry, notReadyReason: @escaping @Sendable () -> String?) {
        self.registry = registry
        self.notReadyReason = notReadyReason
    }

    /// Picks the reply for `head`.
    public func respond(to head: HTTPRequestHead) -> HTTPResponse {
        let known = ["/metrics", "/healthz", "/readyz"]
        guard known.contains(head.path) else { return HTTPResponse(status: 404, body: "not found\n") }
        guard head.method == "GET" else { return HTTPResponse(status: 405, body: "method not allowed\n") }
        switch head.path {
        case "/metrics":
            return HTTPResponse(status: 200, contentType: PrometheusText.contentType, body: registry.render())
        case "/healthz":
            return HTTPResponse(status: 200, body: "ok\n")
        default:
            if let reason = notReadyReason() { return HTTPResponse(status: 503, body: reason + "\n") }
            return HTTPResponse(status: 200, body: "ready\n")
        }
    }
}
