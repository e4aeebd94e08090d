// Tests of syslog output against a UNIX datagram socket that the test binds
// itself: exact datagram bytes, and dropped lines when the socket is missing
// or full.
import Testing

#if canImport(Glibc)
import Glibc
#endif

import Log

/// A bound UNIX datagram socket in a fresh temporary folder, removed on deinit.
private final class DatagramReceiver {
    let path: String
    let descriptor: Int32
    private let folder: String

    init() throws {
        var template = Array("/tmp/mailcloak-syslog.XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        try #require(created != nil)
        folder = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        path = folder + "/log"
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        try #require(descriptor >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(bound == 0)
    }

    deinit {
        close(descriptor)
        unlink(path)
        rmdir(folder)
    }

    /// Returns the next queued datagram, or nil when none is queued.
    func receive() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        return count < 0 ? nil : Array(buffer[..<count])
    }
}

@Test func syslogDatagramHasExactBytes() throws {
    let receiver = try DatagramReceiver()
    let writer = try SyslogWriter(path: receiver.path, facility: .mail, ident: "mailcloak")

    let sent = writer.send("level=warning event=\"TLS handshake failed\"", level: .warning)
    let datagram = receiver.receive()

    #expect(sent)
    #expect(datagram == Array("<20>mailcloak[\(getpid())]: level=warning event=\"TLS handshake failed\"".utf8))
    #expect(writer.sentLines == 1)
    #expect(writer.droppedLines == 0)
}

@Test(arguments: [
    (SyslogFacility.mail, LogLevel.critical, 18), (.daemon, .error, 27), (.local0, .notice, 133),
    (.local7, .info, 190), (.user, .debug, 15), (.mail, .trace, 23),
])
func syslogPriorityCombinesFacilityAndLevel(facility: SyslogFacility, level: LogLevel, priority: Int) throws {
    let writer = try SyslogWriter(path: "/nonexistent/log", facility: facility, ident: "mc")

    let datagram = writer.datagram("x", level: level)

    #expect(datagram == Array("<\(priority)>mc[\(getpid())]: x".utf8))
}

@Test func syslogMissingSocketDropsLine() throws {
    let writer = try SyslogWriter(path: "/tmp/mailcloak-no-such-folder/log")

    let sent = writer.send("level=info event=x", level: .info)

    #expect(!sent)
    #expect(writer.droppedLines == 1)
}

/// The receiver never reads, so its queue fills (Linux queues up to
/// net.unix.max_dgram_qlen datagrams, 512 by default) and later sends fail
/// with EAGAIN at once instead of blocking.
@Test func syslogFullSocketDropsLines() throws {
    let receiver = try DatagramReceiver()
    let writer = try SyslogWriter(path: receiver.path)

    for _ in 0..<2000 {
        writer.send(String(repeating: "x", count: 200), level: .info)
    }

    #expect(writer.droppedLines > 0)
    #expect(writer.sentLines + writer.droppedLines == 2000)
}

@Test func syslogLongMessageIsCut() throws {
    let receiver = try DatagramReceiver()
    let writer = try SyslogWriter(path: receiver.path, ident: "m")

    writer.send(String(repeating: "y", count: SyslogWriter.maxMessageSize + 100), level: .info)
    let datagram = try #require(receiver.receive())

    #expect(datagram.count == "<22>m[\(getpid())]: ".utf8.count + SyslogWriter.maxMessageSize)
}

@Test func syslogPathTooLongIsRejected() {
    let path = "/" + String(repeating: "p", count: 120)

    #expect(throws: SyslogError.invalidPath(path, limit: 107)) {
        try SyslogWriter(path: path)
    }
}

@Test func loggerSendsLineWithoutTime() throws {
    let receiver = try DatagramReceiver()
    let logger = Logger(fileDescriptor: -1)
    logger.syslog = try SyslogWriter(path: receiver.path, facility: .local3, ident: "mailcloak")

    logger.error("store connection failed", [(.error, "connection refused"), (.attempt, "2")])
    let datagram = receiver.receive()

    let expected = "<155>mailcloak[\(getpid())]: level=error event=\"store connection failed\""
        + " error=\"connection refused\" attempt=2"
    #expect(datagram == Array(expected.utf8))
}
