import Config
import Foundation
import Reactor
import Synchronization
import Testing
import Locking

/// Replies `ok LINE\n` to every complete line and closes on a line `bye`. The lines `later`
/// and `slow` are answered `late\n` from another thread, as a worker would, `slow` after 200 ms.
final class LineHandler: ConnectionHandler {
    func connectionReadable(_ connection: Connection) {
        // One line at a time, as a protocol session does, so that a paused
        // connection keeps the rest of its input.
        while !connection.isReadingPaused, !connection.isClosed, let line = takeLine(connection) {
            if line == "bye" {
                connection.close(reason: .protocolError)
                return
            }
            if line == "later" || line == "slow" {
                connection.isReadingPaused = true
                let loop = connection.eventLoop
                let id = connection.id
                let delay: UInt32 = line == "slow" ? 200_000 : 0
                Thread.detachNewThread {
                    usleep(delay)
                    loop.deliver("late\n", to: id)
                }
                return
            }
            connection.send(Array("ok \(line)\n".utf8))
        }
    }

    private func takeLine(_ connection: Connection) -> String? {
        var line: String?
        connection.withInput { buffer in
            guard let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) else { return 0 }
            line = String(decoding: buffer[..<newline], as: UTF8.self)
            return newline + 1
        }
        if line == nil, connection.bufferedInputCount > 0 {
            connection.markRequestStarted()
        } else {
            connection.markRequestComplete()
        }
        return line
    }

    func connectionReceived(_ message: any Sendable, on connection: Connection) {
        connection.send(Array((message as! String).utf8))
        connection.isReadingPaused = false
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {}
}

struct LineFactory: ConnectionHandlerFactory {
    func makeHandler(for connection: Connection) -> any ConnectionHandler { LineHandler() }
}

private func startGroup(idleTimeout: Double = 60, ioTimeout: Double = 60, maxInput: Int = 1024,
                        maxOutput: Int = 1024 * 1024) throws -> (ServerLoopGroup, UInt16)
{
    let listener = try ListeningSocket.bind(ListenerConfig(name: "test", address: .tcp(host: "127.0.0.1", port: 0)))
    let group = try ServerLoopGroup(
        threadCount: 2, listeners: [listener],
        limits: ConnectionLimits(
            idleTimeout: idleTimeout, ioTimeout: ioTimeout, maxBufferedInput: maxInput, maxBufferedOutput: maxOutput),
        factory: LineFactory())
    group.start()
    return (group, listener.port!)
}

/// A blocking test client with a receive timeout.
private final class Client {
    let fd: Int32

    init(port: UInt16, receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(fd) }

    func send(_ text: String) {
        _ = text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Sends `text` up to `times` times without reading; returns false once a send fails.
    func sendRepeatedly(_ text: String, times: Int) -> Bool {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(text.utf8)
        for _ in 0..<times {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 { return false }
        }
        return true
    }

    /// Reads until `count` bytes arrived, the peer closed, or the timeout passed.
    func read(count: Int) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < count {
            let received = recv(fd, &chunk, chunk.count, 0)
            if received <= 0 { break }
            bytes.append(contentsOf: chunk[0..<received])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reports whether the peer closed the connection (read returns 0).
    func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }
}

@Suite struct ReactorTests {
    @Test func loopAnswersManyRequestsOnOneConnection() throws {
        let (group, port) = try startGroup()
        defer { group.stop() }
        let client = try Client(port: port)
        for index in 0..<50 {
            client.send("req\(index)\n")
            #expect(client.read(count: "ok req\(index)\n".utf8.count) == "ok req\(index)\n")
        }
    }

    @Test func loopKeepsOrderOfPipelinedRequests() throws {
        let (group, port) = try startGroup()
        defer { group.stop() }
        let client = try Client(port: port)
        client.send("a\nlater\nb\n")
        #expect(client.read(count: 15) == "ok a\nlate\nok b\n")
    }

    @Test func loopAnswersSplitRequest() throws {
        let (group, port) = try startGroup()
        defer { group.stop() }
        let client = try Client(port: port)
        client.send("par")
        usleep(50_000)
        client.send("tial\n")
        #expect(client.read(count: 11) == "ok partial\n")
    }

    @Test func loopFinishesRepliesAfterHalfClose() throws {
        let (group, port) = try startGroup()
        defer { group.stop() }
        let client = try Client(port: port)
        client.send("later\nx\n")
        client.shutdownWrite()
        #expect(client.read(count: 100) == "late\nok x\n")
    }

    @Test func loopClosesConnectionOverInputLimit() throws {
        let (group, port) = try startGroup(maxInput: 1024)
        defer { group.stop() }
        let client = try Client(port: port)
        client.send(String(repeating: "x", count: 4000))
        #expect(client.isClosedByPeer())
    }

    @Test func loopClosesPeerThatNeverReads() throws {
        let (group, port) = try startGroup(maxInput: 64 * 1024, maxOutput: 64 * 1024)
        defer { group.stop() }
        let client = try Client(port: port, receiveBuffer: 4096)
        // 4000 lines a batch; the replies pile up in the server until it gives up on the peer.
        let batch = String(repeating: "request\n", count: 4000)
        #expect(!client.sendRepeatedly(batch, times: 2000))
        let other = try Client(port: port)
        other.send("still\n")
        #expect(other.read(count: 9) == "ok still\n")
    }

    @Test func loopClosesIdleConnection() throws {
        let (group, port) = try startGroup(idleTimeout: 0.3)
        defer { group.stop() }
        let client = try Client(port: port)
        client.send("one\n")
        #expect(client.read(count: 7) == "ok one\n")
        #expect(client.isClosedByPeer())
    }

    @Test func loopClosesStalledPartialRequest() throws {
        let (group, port) = try startGroup(idleTimeout: 60, ioTimeout: 0.3)
        defer { group.stop() }
        let client = try Client(port: port)
        client.send("no newline")
        #expect(client.isClosedByPeer())
    }

    @Test func loopKeepsServingAfterHandlerCloses() throws {
        let (group, port) = try startGroup()
        defer { group.stop() }
        let first = try Client(port: port)
        first.send("bye\n")
        #expect(first.isClosedByPeer())
        let second = try Client(port: port)
        second.send("hi\n")
        #expect(second.read(count: 6) == "ok hi\n")
    }
}

@Suite struct WorkerPoolTests {
    @Test func poolRejectsWorkBeyondQueueLimit() {
        let pool = WorkerPool(threads: 1, queueLimit: 2)
        let gate = Locked(false)
        let blocker: @Sendable () -> Void = {
            while !gate.withLock({ $0 }) { usleep(1000) }
        }
        #expect(pool.submit(blocker))
        usleep(50_000)
        #expect(pool.submit {})
        #expect(pool.submit {})
        #expect(!pool.submit {})
        gate.withLock { $0 = true }
        pool.shutdown()
    }

    @Test func poolRunsEveryAcceptedJob() {
        let pool = WorkerPool(threads: 4, queueLimit: 1000)
        let counter = Atomic<Int>(0)
        for _ in 0..<500 {
            #expect(pool.submit { counter.add(1, ordering: .relaxed) })
        }
        pool.shutdown()
        #expect(counter.load(ordering: .relaxed) == 500)
    }
}

@Suite struct ListeningSocketTests {
    @Test func unixListenerAppliesMode() throws {
        let path = NSTemporaryDirectory() + "mc-test-\(getpid()).sock"
        let listener = try ListeningSocket.bind(ListenerConfig(
            name: "unix", address: .unix(path: path), unixPermissions: UnixSocketPermissions(mode: 0o600)))
        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o600)
        #expect(listener.info.isUnix)
        unlink(path)
    }

    @Test func unixListenerRefusesRegularFile() throws {
        let path = NSTemporaryDirectory() + "mc-test-file-\(getpid())"
        FileManager.default.createFile(atPath: path, contents: Data("x".utf8))
        defer { unlink(path) }
        #expect(throws: ReactorError.invalidAddress("unix:\(path) exists and is not a socket")) {
            try ListeningSocket.bind(ListenerConfig(name: "unix", address: .unix(path: path)))
        }
    }

    @Test func tcpListenerBindsIPv6Loopback() throws {
        let listener = try ListeningSocket.bind(ListenerConfig(name: "v6", address: .tcp(host: "::1", port: 0)))
        #expect(listener.port != nil)
        #expect(listener.info.boundAddress.hasPrefix("tcp:[::1]:"))
    }

    @Test func tcpListenerRejectsBusyPort() throws {
        let first = try ListeningSocket.bind(ListenerConfig(name: "a", address: .tcp(host: "127.0.0.1", port: 0)))
        let port = first.port!
        #expect(throws: ReactorError.addressInUse("tcp:127.0.0.1:\(port)")) {
            try ListeningSocket.bind(ListenerConfig(name: "b", address: .tcp(host: "127.0.0.1", port: port)))
        }
    }
}
