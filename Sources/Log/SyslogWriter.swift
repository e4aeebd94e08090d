// Sends log lines to the local syslog daemon as RFC 3164-style datagrams,
// `<PRI>ident[pid]: message`, on a UNIX datagram socket (/dev/log by
// default). The daemon adds the time stamp and host name. The socket is
// non-blocking, so when the daemon's queue is full or the socket is missing,
// the line is dropped and counted, and a syslog line never blocks the caller.
//
// NOTE: Lines longer than maxMessageSize bytes are cut. RFC 3164 allows 1024
// bytes, but rsyslog and systemd-journald accept 8 KiB on /dev/log.
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A syslog facility as RFC 3164 numbers it.
public enum SyslogFacility: String, Sendable, CaseIterable {
    case user, mail, daemon
    case local0, local1, local2, local3, local4, local5, local6, local7

    /// The facility code: user 1, mail 2, daemon 3, local0 to local7 16 to 23.
    public var code: Int {
        switch self {
        case .user: 1
        case .mail: 2
        case .daemon: 3
        case .local0: 16
        case .local1: 17
        case .local2: 18
        case .local3: 19
        case .local4: 20
        case .local5: 21
        case .local6: 22
        case .local7: 23
        }
    }
}

/// A socket that could not be set up for syslog output.
public enum SyslogError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The socket path is empty or longer than a `sockaddr_un` holds.
    case invalidPath(String, limit: Int)
    /// socket(2) failed with `errno`.
    case socketFailed(errno: Int32)

    public var description: String {
        switch self {
        case .invalidPath(let path, let limit): "invalid syslog socket path \"\(path)\": expected 1 to \(limit) bytes"
        case .socketFailed(let code): "syslog socket could not be created: \(String(cString: strerror(code)))"
        }
    }
}

/// Writes datagrams to a syslog socket. Thread-safe: each line is one `sendto(2)` call.
public final class SyslogWriter: Sendable {
    /// Maximum message size in bytes, not counting the `<PRI>ident[pid]: ` header.
    public static let maxMessageSize = 8192

    public let path: String
    public let facility: SyslogFacility
    public let ident: String
    private let descriptor: Int32
    private let header: [UInt8]
    private let pathBytes: [UInt8]
    private let dropped = Atomic<UInt64>(0)
    private let sent = Atomic<UInt64>(0)

    /// Opens a non-blocking datagram socket for `path`. The path need not exist yet: lines sent
    /// while it is missing are dropped and counted.
    public init(path: String = "/dev/log", facility: SyslogFacility = .mail, ident: String = "mailcloak")
        throws(SyslogError)
    {
        let limit = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1
        guard !path.isEmpty, path.utf8.count <= limit else { throw .invalidPath(path, limit: limit) }
        let descriptor = socket(
            AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw .socketFailed(errno: errno) }
        self.path = path
        self.facility = facility
        self.ident = ident
        self.descriptor = descriptor
        self.pathBytes = Array(path.utf8)
        self.header = Array("\(ident)[\(getpid())]: ".utf8)
    }

    deinit {
        close(descriptor)
    }

    /// Lines dropped because the socket was full or missing, since start.
    public var droppedLines: UInt64 { dropped.load(ordering: .relaxed) }

    /// Lines handed to the socket, since start.
    public var sentLines: UInt64 { sent.load(ordering: .relaxed) }

    /// Maps a level to its syslog severity: critical 2, error 3, warning 4, notice 5, info 6, debug and trace 7.
    public static func severity(_ level: LogLevel) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Builds the datagram for `message` at `level`: `<PRI>ident[pid]: message`, PRI being
    /// facility × 8 + severity.
    public func datagram(_ message: String, level: LogLevel) -> [UInt8] {
        let priority = facility.code * 8 + Self.severity(level)
        var bytes = Array("<\(priority)>".utf8)
        bytes += header
        bytes += message.utf8.prefix(Self.maxMessageSize)
        return bytes
    }

    /// Sends one line without waiting. Returns false, and counts the line as dropped, when the
    /// socket is full, missing or refuses it.
    @discardableResult
    public func send(_ message: String, level: LogLevel) -> Bool {
        let bytes = datagram(message, level: level)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: pathBytes)
        }
        let result = bytes.withUnsafeBytes { buffer in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    sendto(descriptor, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), socketAddress,
                           socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
        guard result == bytes.count else {
            dropped.add(1, ordering: .relaxed)
            return false
        }
        sent.add(1, ordering: .relaxed)
        return true
    }
}
