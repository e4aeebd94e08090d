// Structured logging: one event per line, a constant event text plus
// key=value metadata (or one JSON object per line), written to stderr or to
// the local syslog daemon. The message and metadata are autoclosures, so a
// disabled level costs one atomic load and one comparison.
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization
import Locking

/// Severity of a log event, lowest first.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The level's name as written in configuration and in log lines.
    public var name: String {
        switch self {
        case .trace: "trace"
        case .debug: "debug"
        case .info: "info"
        case .notice: "notice"
        case .warning: "warning"
        case .error: "error"
        case .critical: "critical"
        }
    }

    /// Parses a level name as written in configuration; nil when unknown.
    public init?(name: String) {
        guard let level = LogLevel.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = level
    }
}

/// Output format of log lines.
public enum LogFormat: String, Sendable {
    case keyValue = "keyvalue"
    case json
}

/// Metadata keys. A closed set, so that log searches can rely on the names.
public enum LogKey: String, Sendable {
    case connection = "conn.id"
    case peer
    case listener
    case service
    case map
    case key
    case state
    case action
    case sender
    case recipient
    case saslUsername = "sasl.username"
    case saslMethod = "sasl.method"
    case error
    case errno
    case path
    case address
    case count
    case duration = "duration.ms"
    case version
    case table
    case rows
    case age = "age.s"
    case attempt
    case delay = "delay.ms"
    case url
    case status
    case realm
    case provider
    case user
    case reason
    case limit
    case value
    case threads
    case workers
    /// Events of a rate-limited group that were counted but not written during its window.
    case suppressed
    /// The outcome of a policy or socketmap request, such as `dunno`, `reject`, `defer`, `ok` or `notfound`.
    case decision
    /// The reply text sent to Postfix.
    case reply
    /// Configuration keys that a reload changed and applied, comma-separated.
    case changed
    /// Configuration keys that changed in the file but keep their value until a restart.
    case restartNeeded = "restart_needed"
}

/// A process-wide logger. Thread-safe: the level is atomic and each line is
/// written with one `write(2)` or `sendto(2)` call, so lines from several
/// threads never mix.
public final class Logger: Sendable {
    /// The logger every component uses unless handed another. It summarizes ended
    /// windows of rate-limited events once a second.
    public static let shared = Logger(flushesRepeatsEverySecond: true)

    private let levelStorage = Atomic<Int>(LogLevel.info.rawValue)
    private let formatStorage = Atomic<Int>(0)
    private let fileDescriptor: Int32
    private let syslogStorage = Locked<SyslogWriter?>(nil)
    let flushesRepeats: Bool
    let flushStarted = Atomic<Bool>(false)
    private let dropped = Atomic<UInt64>(0)
    /// Groups repeats of the events logged with ``log(_:_:limitedBy:_:)``.
    public let repeats: LogRepeatLimiter
    /// Picks the per-request decision lines that are logged at info; see ``decisionLevel()``.
    public let decisionSampler = LogSampler()

    /// - Parameters:
    ///   - fileDescriptor: Where lines go while no syslog output is set.
    ///   - repeats: The limiter of ``log(_:_:limitedBy:_:)``; its window is 10 s by default.
    ///   - flushesRepeatsEverySecond: Whether a background timer writes the summaries of ended
    ///     windows. Without it, a summary is written only when its group's next event comes, or
    ///     when ``flushRepeats()`` is called.
    public init(
        fileDescriptor: Int32 = 2, repeats: LogRepeatLimiter = LogRepeatLimiter(),
        flushesRepeatsEverySecond: Bool = false
    ) {
        self.fileDescriptor = fileDescriptor
        self.repeats = repeats
        self.flushesRepeats = flushesRepeatsEverySecond
    }

    /// Lines that the output did not take: the syslog socket was full or missing, or a write to the
    /// file descriptor failed. A line cut short by a failed write counts too.
    public var droppedLines: UInt64 { dropped.load(ordering: .relaxed) }

    /// The syslog socket lines go to, or nil for the file descriptor (stderr by default).
    public var syslog: SyslogWriter? {
        get { syslogStorage.withLock { $0 } }
        set { syslogStorage.withLock { $0 = newValue } }
    }

    /// The lowest level that is written.
    public var level: LogLevel {
        get { LogLevel(rawValue: levelStorage.load(ordering: .relaxed)) ?? .info }
        set { levelStorage.store(newValue.rawValue, ordering: .relaxed) }
    }

    public var format: LogFormat {
        get { formatStorage.load(ordering: .relaxed) == 0 ? .keyValue : .json }
        set { formatStorage.store(newValue == .keyValue ? 0 : 1, ordering: .relaxed) }
    }

    /// Reports whether events at `level` are written, for callers that
    /// would otherwise do work only to build metadata.
    @inline(__always)
    public func isEnabled(_ level: LogLevel) -> Bool {
        level.rawValue >= levelStorage.load(ordering: .relaxed)
    }

    /// Writes one event when `level` is enabled.
    @inline(__always)
    public func log(
        _ level: LogLevel, _ event: @autoclosure () -> String,
        _ metadata: @autoclosure () -> [(LogKey, String)] = []
    ) {
        guard isEnabled(level) else { return }
        emit(level, event(), metadata())
    }

    public func trace(_ event: @autoclosure () -> String, _ metadata: @autoclosure () -> [(LogKey, String)] = []) {
        log(.trace, event(), metadata())
    }

    public func debug(_ event: @autoclosure () -> String, _ metadata: @autoclosure () -> [(LogKey, String)] = []) {
        log(.debug, event(), metadata())
    }

    public func info(_ event: @autoclosure () -> String, _ metadata: @autoclosure () -> [(LogKey, String)] = []) {
        log(.info, event(), metadata())
    }

    public func notice(_ event: @autoclosure () -> String, _ metadata: @autoclosure () -> [(LogKey, String)] = []) {
        log(.notice, event(), metadata())
    }

    public func warning(_ event: @autoclosure () -> String, _ metadata: @autoclosure () -> [(LogKey, String)] = []) {
        log(.warning, event(), metadata())
    }

    public func error(_ event: @autoclosure () -> String, _ metadata: @autoclosure () -> [(LogKey, String)] = []) {
        log(.error, event(), metadata())
    }

    public func critical(_ event: @autoclosure () -> String, _ metadata: @autoclosure () -> [(LogKey, String)] = []) {
        log(.critical, event(), metadata())
    }

    func emit(_ level: LogLevel, _ event: String, _ metadata: [(LogKey, String)]) {
        if let syslog {
            // The syslog daemon stamps each line with its own time.
            let line = format == .json
                ? LogLineFormatter.json(level: level, event: event, metadata: metadata, time: nil)
                : LogLineFormatter.keyValue(level: level, event: event, metadata: metadata, time: nil)
            if !syslog.send(line, level: level) { dropped.add(1, ordering: .relaxed) }
            return
        }
        let line = format == .json
            ? LogLineFormatter.json(level: level, event: event, metadata: metadata, time: Self.timestamp())
            : LogLineFormatter.keyValue(level: level, event: event, metadata: metadata, time: Self.timestamp())
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 {
                    dropped.add(1, ordering: .relaxed)
                    break
                }
                offset += written
            }
        }
    }

    /// Formats the current UTC time as RFC 3339 with milliseconds.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}
