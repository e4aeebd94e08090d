// A small blocking HTTP server on its own thread for /metrics, /healthz and
// /readyz. It accepts one connection at a time, reads one request head
// within a deadline, writes one reply and closes. Scrapes are rare and come
// from a local agent, so the serial loop costs nothing on the request path.
//
// NOTE: Connections are served one after another, so a client that stalls
// delays the next scrape by up to `readTimeout`.
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Locking

/// A failure to bind the endpoint's address.
public struct MetricsServerError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// The HTTP listener of the metrics endpoint.
public final class MetricsHTTPServer: Sendable {
    /// Time allowed for a request head to arrive, and for a reply to be written, in seconds.
    public let readTimeout: Double
    /// The port bound, useful when the configuration gave port 0.
    public let port: UInt16
    private let descriptor: Int32
    private let routes: MetricsRoutes
    private let stopRequested = Atomic<Bool>(false)
    private let thread = Locked<pthread_t?>(nil)

    /// Binds `host:port` (a numeric IPv4 or IPv6 address); nothing is accepted until `start()`.
    public init(host: String, port: UInt16, routes: MetricsRoutes, readTimeout: Double = 5)
        throws(MetricsServerError)
    {
        self.routes = routes
        self.readTimeout = readTimeout
        (descriptor, self.port) = try Self.bind(host: host, port: port)
    }

    deinit { close(descriptor) }

    /// Starts the accept thread.
    public func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var handle = pthread_t()
        let status = pthread_create(&handle, nil, { argument in
            let server = Unmanaged<MetricsHTTPServer>.fromOpaque(argument!).takeRetainedValue()
            server.run()
            return nil
        }, box)
        if status == 0 {
            thread.withLock { $0 = handle }
        } else {
            Unmanaged<MetricsHTTPServer>.fromOpaque(box).release()
        }
    }

    /// Stops accepting and waits for the thread to end; the current request finishes first.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        if let handle = thread.withLock({ current -> pthread_t? in
            defer { current = nil }
            return current
        }) {
            pthread_join(handle, nil)
        }
        // Stop listening now, not when the server is freed at exit: a health check that
        // arrives during shutdown is refused at once instead of waiting unanswered and reset.
        _ = shutdown(descriptor, Int32(SHUT_RDWR))
    }

    private func run() {
        while !stopRequested.load(ordering: .relaxed) {
            var waiting = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&waiting, 1, 250) > 0 else { continue }
            let client = accept(descriptor, nil, nil)
            guard client >= 0 else { continue }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            serve(client)
            close(client)
        }
    }

    /// Reads one request head within `readTimeout` and writes the reply.
    private func serve(_ client: Int32) {
        let deadline = monotonicNow() + readTimeout
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        var response: HTTPResponse
        while true {
            switch HTTPRequestHead.parse(received) {
            case .complete(let head):
                response = routes.respond(to: head)
            case .invalid(let error):
                response = HTTPResponse(error: error)
            case .needMore:
                let remaining = deadline - monotonicNow()
                var waiting = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
                guard remaining > 0, poll(&waiting, 1, Int32(remaining * 1000) + 1) > 0 else {
                    response = HTTPResponse(status: 408, body: "request head not received within the deadline\n")
                    break
                }
                let count = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { return }
                received += chunk[..<count]
                continue
            }
            break
        }
        write(response.encoded, to: client, deadline: deadline + readTimeout)
    }

    private func write(_ bytes: [UInt8], to client: Int32, deadline: Double) {
        var offset = 0
        while offset < bytes.count {
            let remaining = deadline - monotonicNow()
            var waiting = pollfd(fd: client, events: Int16(POLLOUT), revents: 0)
            guard remaining > 0, poll(&waiting, 1, Int32(remaining * 1000) + 1) > 0 else { return }
            let count = bytes[offset...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return }
            offset += count
        }
    }

    private static func bind(host: String, port: UInt16) throws(MetricsServerError) -> (Int32, UInt16) {
        var hints = addrinfo()
        hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &found)
        guard status == 0, let info = found else {
            throw MetricsServerError(description: "invalid metrics address \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(found) }
        let descriptor = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw systemError("socket", host: host, port: port) }
        var one: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard Glibc.bind(descriptor, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0,
            listen(descriptor, 16) == 0
        else {
            let error = systemError("bind", host: host, port: port)
            close(descriptor)
            throw error
        }
        return (descriptor, boundPort(descriptor))
    }

    private static func boundPort(_ descriptor: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        let family = storage.ss_family
        return withUnsafePointer(to: &storage) { pointer in
            if family == sa_family_t(AF_INET6) {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    private static func systemError(_ call: String, host: String, port: UInt16) -> MetricsServerError {
        MetricsServerError(description: "\(call) failed for metrics address \(host) port \(port): "
            + String(cString: strerror(errno)))
    }
}

/// Seconds on the monotonic clock.
func monotonicNow() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
