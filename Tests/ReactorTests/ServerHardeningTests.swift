// Connection limits, graceful drain and slow clients, against a real group of
// event loops on loopback (127.0.0.1, ::1) and UNIX sockets.
import Config
import Foundation
import Reactor
import Synchronization
import Testing

private func startLineGroup(
    listeners: [ListenerConfig], maxConnections: Int = 100, maxPerSource: Int = 100, ioTimeout: Double = 60
) throws -> ServerLoopGroup {
    let sockets = try listeners.map { try ListeningSocket.bind($0) }
    let group = try ServerLoopGroup(
        threadCount: 2, listeners: sockets,
        limits: ConnectionLimits(
            idleTimeout: 60, ioTimeout: ioTimeout, maxConnections: maxConnections,
            maxConnectionsPerSource: maxPerSource),
        factory: LineFactory())
    group.start()
    return group
}

private let loopbackV4 = ListenerConfig(name: "v4", address: .tcp(host: "127.0.0.1", port: 0))

/// A blocking client with a 5 s receive timeout, over TCP or a UNIX socket.
private final class LineClient {
    let fd: Int32

    init(host: String, port: UInt16) throws {
        let isV6 = host.contains(":")
        fd = socket(isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        setReceiveTimeout()
        let result: Int32
        if isV6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &address.sin6_addr)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr(host)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    init(unixPath: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        setReceiveTimeout()
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(unixPath.utf8)) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(fd) }

    private func setReceiveTimeout() {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) {
        _ = text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// Sends `line` and a newline, and returns the reply line without its newline ("" when closed).
    func request(_ line: String) -> String {
        send(line + "\n")
        return readLine()
    }

    func readLine() -> String {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) == 1 {
            if byte == UInt8(ascii: "\n") { break }
            bytes.append(byte)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reports whether the peer closed the connection (read returns 0 or the connection was reset).
    func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        let received = recv(fd, &byte, 1, 0)
        return received == 0 || (received < 0 && errno == ECONNRESET)
    }

    /// Reports, without waiting, whether the peer has closed the connection.
    func hasBeenClosed() -> Bool {
        var byte: UInt8 = 0
        let received = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
        return received == 0 || (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }
}

@Suite struct ConnectionLimitTests {
    @Test func globalLimitClosesExtraConnection() throws {
        let group = try startLineGroup(listeners: [loopbackV4], maxConnections: 2)
        defer { group.stop() }
        let port = group.listeners[0].port!
        let first = try LineClient(host: "127.0.0.1", port: port)
        let second = try LineClient(host: "127.0.0.1", port: port)
        #expect(first.request("a") == "ok a")
        #expect(second.request("b") == "ok b")
        let third = try LineClient(host: "127.0.0.1", port: port)
        #expect(third.isClosedByPeer())
        #expect(group.rejectedConnections(.maxConnections) == 1)
        #expect(group.rejectedConnections(.maxConnectionsPerSource) == 0)
        #expect(first.request("still") == "ok still")
    }

    @Test func globalLimitFreesSlotOnClose() throws {
        let group = try startLineGroup(listeners: [loopbackV4], maxConnections: 1)
        defer { group.stop() }
        let port = group.listeners[0].port!
        var first: LineClient? = try LineClient(host: "127.0.0.1", port: port)
        #expect(first?.request("a") == "ok a")
        first = nil
        // The server sees the close on its next read; retry until the slot is free.
        var reply = ""
        for _ in 0..<50 where reply.isEmpty {
            reply = try LineClient(host: "127.0.0.1", port: port).request("b")
            if reply.isEmpty { usleep(20_000) }
        }
        #expect(reply == "ok b")
        #expect(group.admission.openConnections <= 1)
    }

    @Test func perSourceLimitSparesOtherAddress() throws {
        let v6 = ListenerConfig(name: "v6", address: .tcp(host: "::1", port: 0))
        let group = try startLineGroup(listeners: [loopbackV4, v6], maxPerSource: 1)
        defer { group.stop() }
        let first = try LineClient(host: "127.0.0.1", port: group.listeners[0].port!)
        #expect(first.request("a") == "ok a")
        let second = try LineClient(host: "127.0.0.1", port: group.listeners[0].port!)
        #expect(second.isClosedByPeer())
        let other = try LineClient(host: "::1", port: group.listeners[1].port!)
        #expect(other.request("b") == "ok b")
        #expect(group.rejectedConnections(.maxConnectionsPerSource) == 1)
        #expect(group.rejectedConnections(.maxConnections) == 0)
    }

    @Test func perSourceLimitExemptsUnixPeers() throws {
        let path = NSTemporaryDirectory() + "mc-limit-\(getpid()).sock"
        let unix = ListenerConfig(name: "unix", address: .unix(path: path))
        let group = try startLineGroup(listeners: [unix], maxPerSource: 1)
        defer {
            group.stop()
            unlink(path)
        }
        let first = try LineClient(unixPath: path)
        let second = try LineClient(unixPath: path)
        #expect(first.request("a") == "ok a")
        #expect(second.request("b") == "ok b")
        #expect(group.rejectedConnections(.maxConnectionsPerSource) == 0)
    }
}

@Suite struct DrainTests {
    @Test func drainClosesIdleConnection() throws {
        let group = try startLineGroup(listeners: [loopbackV4])
        defer { group.stop() }
        let client = try LineClient(host: "127.0.0.1", port: group.listeners[0].port!)
        #expect(client.request("a") == "ok a")
        group.beginDrain()
        #expect(client.isClosedByPeer())
    }

    @Test func drainRefusesNewConnections() throws {
        let group = try startLineGroup(listeners: [loopbackV4])
        defer { group.stop() }
        let port = try #require(group.listeners[0].port)
        let client = try LineClient(host: "127.0.0.1", port: port)
        #expect(client.request("a") == "ok a")
        group.beginDrain()
        // The loops close the listening socket on their own threads, soon after beginDrain returns.
        var refused = false
        for _ in 0..<100 where !refused {
            refused = (try? LineClient(host: "127.0.0.1", port: port)) == nil
            if !refused { usleep(50_000) }
        }
        #expect(refused)
    }

    @Test func drainAnswersRequestOnWorker() throws {
        let group = try startLineGroup(listeners: [loopbackV4])
        defer { group.stop() }
        let client = try LineClient(host: "127.0.0.1", port: group.listeners[0].port!)
        #expect(client.request("a") == "ok a")
        client.send("slow\n")
        // Wait until the server has read the request and paused the connection.
        usleep(50_000)
        group.beginDrain()
        #expect(client.readLine() == "late")
        #expect(client.isClosedByPeer())
    }

    @Test func drainAnswersPipelinedRequests() throws {
        let group = try startLineGroup(listeners: [loopbackV4])
        defer { group.stop() }
        let client = try LineClient(host: "127.0.0.1", port: group.listeners[0].port!)
        client.send("slow\nb\nc\n")
        usleep(50_000)
        group.beginDrain()
        #expect(client.readLine() == "late")
        #expect(client.readLine() == "ok b")
        #expect(client.readLine() == "ok c")
        #expect(client.isClosedByPeer())
    }

    @Test func drainEndsWithNoOpenConnections() throws {
        let group = try startLineGroup(listeners: [loopbackV4])
        defer { group.stop() }
        let clients = try (0..<4).map { _ in try LineClient(host: "127.0.0.1", port: group.listeners[0].port!) }
        for (index, client) in clients.enumerated() {
            #expect(client.request("r\(index)") == "ok r\(index)")
        }
        group.beginDrain()
        for client in clients {
            #expect(client.isClosedByPeer())
        }
        var open = group.openConnections
        for _ in 0..<100 where open > 0 {
            usleep(10_000)
            open = group.openConnections
        }
        #expect(open == 0)
    }
}

@Suite struct SlowClientTests {
    @Test func slowSendersCloseAtIOTimeout() throws {
        let group = try startLineGroup(listeners: [loopbackV4], ioTimeout: 0.5)
        defer { group.stop() }
        let port = group.listeners[0].port!
        let slow = try (0..<3).map { _ in try LineClient(host: "127.0.0.1", port: port) }
        let normal = try LineClient(host: "127.0.0.1", port: port)
        var closed = Set<Int>()
        var replies: [String] = []
        // One byte per client every 100 ms, never a newline; at most 5 s.
        for round in 0..<50 where closed.count < slow.count {
            for (index, client) in slow.enumerated() where !closed.contains(index) {
                if client.hasBeenClosed() {
                    closed.insert(index)
                } else {
                    client.send("x")
                }
            }
            replies.append(normal.request("n\(round)"))
            usleep(100_000)
        }
        #expect(closed == [0, 1, 2])
        #expect(replies == replies.indices.map { "ok n\($0)" })
    }
}
