// Helpers for end-to-end tests against a real, private Postfix (and Dovecot)
// on loopback. They run a command with a deadline, start and stop the
// instances through scripts/testenv/*.sh, run swaks and parse the server's
// SMTP replies, and speak SMTP directly for what swaks cannot send (AUTH
// XOAUTH2). The scripts must run as root; scripts/testenv/README.md lists
// their limits.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A failure of the test environment itself, as opposed to a failed expectation.
enum TestEnvironmentError: Error, CustomStringConvertible {
    case launchFailed(command: String, reason: String)
    case timedOut(command: String, seconds: Double)
    case commandFailed(command: String, status: Int32, output: String)
    case mailNotDelivered(path: String, seconds: Double)
    case noFreePorts(range: Range<Int>)
    case connectFailed(port: UInt16, errno: Int32)
    case socketFailed(operation: String, errno: Int32)
    case invalidReply(line: String)
    case replyTooLong(limit: Int)

    var description: String {
        switch self {
        case .launchFailed(let command, let reason):
            return "could not launch \(command): \(reason)"
        case .timedOut(let command, let seconds):
            return "\(command) did not finish within \(seconds) s and was killed"
        case .commandFailed(let command, let status, let output):
            return "\(command) exited with status \(status):\n\(output)"
        case .mailNotDelivered(let path, let seconds):
            return "no mail arrived in \(path) within \(seconds) s"
        case .noFreePorts(let range):
            return "no free loopback ports found in \(range.lowerBound)..<\(range.upperBound)"
        case .connectFailed(let port, let errno):
            return "connect to 127.0.0.1:\(port) failed: \(String(cString: strerror(errno)))"
        case .socketFailed(let operation, let errno):
            return "socket \(operation) failed: \(String(cString: strerror(errno)))"
        case .invalidReply(let line):
            return "invalid SMTP reply line: \(line.debugDescription)"
        case .replyTooLong(let limit):
            return "SMTP reply longer than \(limit) lines or bytes"
        }
    }
}

/// Exit status and output of a finished command.
struct CommandResult: Sendable, Equatable {
    let status: Int32
    let standardOutput: String
    let standardError: String
}

/// Process, port and path helpers shared by the end-to-end tests.
enum TestEnvironment {
    /// The package root, found from this file's path (Tests/EndToEndTests/TestEnvironment.swift).
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()

    /// `scripts/testenv` in the package.
    static let scriptDirectory: URL = repositoryRoot.appendingPathComponent("scripts/testenv")

    /// Whether this process can run the private Postfix: it needs root and
    /// Debian's postfix and swaks packages.
    static var canRunPostfix: Bool {
        getuid() == 0
            && FileManager.default.isExecutableFile(atPath: "/usr/sbin/postfix")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/swaks")
    }

    /// Runs a program and waits for it, killing it when the deadline passes.
    ///
    /// The program starts with an empty signal mask, default signal actions
    /// and only descriptors 0-2 open. Foundation's `Process` would pass on the
    /// test runner's mask (almost every signal blocked), and a daemon started
    /// that way ignores SIGTERM; swaks's timeouts need SIGALRM. Output goes to
    /// temporary files rather than pipes, so a daemon that the program leaves
    /// running (the Postfix master) cannot hold a read open.
    /// - Parameters:
    ///   - executable: absolute path of the program.
    ///   - arguments: its arguments, without the program name.
    ///   - timeout: deadline for the whole run, in seconds.
    /// - Throws: `TestEnvironmentError.launchFailed` or `.timedOut`; a non-zero
    ///   exit status is returned, not thrown.
    static func run(_ executable: String, _ arguments: [String], timeout: Double = 30) throws -> CommandResult {
        let command = ([executable] + arguments).joined(separator: " ")
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("testenv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outputPath = scratch.appendingPathComponent("stdout").path
        let errorPath = scratch.appendingPathComponent("stderr").path

        let pid = try spawn(executable, arguments, outputPath: outputPath, errorPath: errorPath, command: command)
        guard let status = waitForExit(pid, timeout: timeout) else {
            kill(pid, SIGTERM)
            if waitForExit(pid, timeout: 2) == nil {
                kill(pid, SIGKILL)
                _ = waitForExit(pid, timeout: 2)
            }
            throw TestEnvironmentError.timedOut(command: command, seconds: timeout)
        }
        return CommandResult(
            status: status,
            standardOutput: readText(URL(fileURLWithPath: outputPath)),
            standardError: readText(URL(fileURLWithPath: errorPath))
        )
    }

    /// Starts a program that keeps running in the foreground (a daemon) and
    /// returns its process id at once. It gets the same clean signal mask,
    /// signal actions and descriptors as a program started by ``run(_:_:timeout:)``.
    /// Stop it with ``terminate(_:timeout:)``, which also reaps it.
    /// - Parameters:
    ///   - outputPath: file that receives standard output (created or truncated).
    ///   - errorPath: file that receives standard error; use a path other than
    ///     `outputPath`, because both files are opened without O_APPEND.
    /// - Throws: `TestEnvironmentError.launchFailed`.
    static func launch(
        _ executable: String, _ arguments: [String], outputPath: String, errorPath: String
    ) throws -> pid_t {
        let command = ([executable] + arguments).joined(separator: " ")
        return try spawn(executable, arguments, outputPath: outputPath, errorPath: errorPath, command: command)
    }

    /// Returns the exit status of a launched process that has exited (and reaps it), or nil while it runs.
    static func exitStatus(of pid: pid_t) -> Int32? {
        waitForExit(pid, timeout: 0)
    }

    /// Sends SIGTERM to a launched process and waits for it to exit, sending
    /// SIGKILL when `timeout` seconds pass. Returns its exit status, or nil
    /// when it did not exit even after SIGKILL.
    @discardableResult
    static func terminate(_ pid: pid_t, timeout: Double = 10) -> Int32? {
        if let status = waitForExit(pid, timeout: 0) {
            return status
        }
        kill(pid, SIGTERM)
        if let status = waitForExit(pid, timeout: timeout) {
            return status
        }
        kill(pid, SIGKILL)
        return waitForExit(pid, timeout: 2)
    }

    private static func spawn(
        _ executable: String,
        _ arguments: [String],
        outputPath: String,
        errorPath: String,
        command: String
    ) throws -> pid_t {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fileActions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&fileActions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        closeInheritedDescriptors(&fileActions)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaultActions = sigset_t()
        sigemptyset(&defaultActions)
        for signal in [SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGALRM, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2] {
            sigaddset(&defaultActions, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaultActions)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &fileActions, &attributes, argv, envp)
        guard status == 0 else {
            throw TestEnvironmentError.launchFailed(command: command, reason: String(cString: strerror(status)))
        }
        return pid
    }

    private typealias CloseFromFunction = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// Adds actions that close every descriptor from 3 up in the child, so a
    /// daemon cannot keep the test runner's pipes and sockets open.
    ///
    /// glibc 2.34+ has posix_spawn_file_actions_addclosefrom_np, but Swift's
    /// Glibc module does not import it, so it is looked up at run time. Without
    /// it, the descriptors open now (listed in /proc/self/fd) are closed instead.
    private static func closeInheritedDescriptors(_ fileActions: inout posix_spawn_file_actions_t) {
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            let closeFrom = unsafeBitCast(symbol, to: CloseFromFunction.self)
            if closeFrom(&fileActions, 3) == 0 {
                return
            }
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for descriptor in names.compactMap({ Int32($0) }) where descriptor > 2 {
            posix_spawn_file_actions_addclose(&fileActions, descriptor)
        }
    }

    /// Reaps a child process, polling every 10 ms. Returns its exit status
    /// (128 + signal number when a signal ended it), or nil at the deadline.
    private static func waitForExit(_ pid: pid_t, timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        var waitStatus: Int32 = 0
        while true {
            let result = waitpid(pid, &waitStatus, WNOHANG)
            if result == pid {
                let signal = waitStatus & 0x7F
                return signal == 0 ? (waitStatus >> 8) & 0xFF : 128 + signal
            }
            if result < 0 && errno != EINTR {
                // ECHILD: someone else reaped it; the status is lost.
                return -1
            }
            if Date() >= deadline {
                return nil
            }
            usleep(10_000)
        }
    }

    /// Runs a program and throws when it exits with a non-zero status.
    @discardableResult
    static func runChecked(_ executable: String, _ arguments: [String], timeout: Double = 30) throws -> CommandResult {
        let result = try run(executable, arguments, timeout: timeout)
        guard result.status == 0 else {
            throw TestEnvironmentError.commandFailed(
                command: ([executable] + arguments).joined(separator: " "),
                status: result.status,
                output: result.standardOutput + result.standardError
            )
        }
        return result
    }

    /// Finds `count` consecutive free TCP ports on 127.0.0.1 below the
    /// ephemeral range and returns the first. A Postfix instance needs two
    /// (SMTP_PORT and SMTP_PORT+1), a Dovecot auth service one.
    ///
    /// NOTE: Another process can take a port between this check and the bind
    /// by the server. The start then fails with an error naming the port.
    static func freePorts(count: Int = 1, in range: Range<Int> = 20000..<32000) throws -> UInt16 {
        for _ in 0..<200 {
            let first = Int.random(in: range.lowerBound..<(range.upperBound - count))
            if (first..<(first + count)).allSatisfy(isFreeLoopbackPort) {
                return UInt16(first)
            }
        }
        throw TestEnvironmentError.noFreePorts(range: range)
    }

    /// Creates a new directory for one test's instances under the system temporary directory.
    static func makeScratchDirectory(prefix: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        // The postfix and dovecot users must reach files under it.
        chmod(url.path, 0o755)
        return url
    }

    static func readText(_ url: URL) -> String {
        guard let data = FileManager.default.contents(atPath: url.path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    private static func isFreeLoopbackPort(_ port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = loopbackAddress(port: UInt16(port))
        let status = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return status == 0
    }

    static func loopbackAddress(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        return address
    }
}

// MARK: - Private Postfix

/// A private Postfix instance started by `scripts/testenv/postfix.sh`.
///
/// smtpd listens on 127.0.0.1:`smtpPort` (smtpd_delay_reject=yes, policy asked
/// at RCPT TO) and on 127.0.0.1:`noDelayPort` (smtpd_delay_reject=no, policy
/// also asked at MAIL FROM). Delivered mail lands in `directory/mail/<address>/`,
/// relayed mail in `directory/relay/<address>/`, one file per message
/// (addresses lower-cased).
struct PostfixInstance: Sendable {
    let directory: URL
    let smtpPort: UInt16
    /// The policy and socketmap endpoint, `127.x.x.x:port`.
    let mailcloakEndpoint: String

    var noDelayPort: UInt16 { smtpPort + 1 }
    var logFile: URL { directory.appendingPathComponent("postfix.log") }

    private static let script = TestEnvironment.scriptDirectory.appendingPathComponent("postfix.sh").path

    /// Starts (or restarts) the instance and waits for both smtpd greetings.
    /// - Parameters:
    ///   - saslPath: Dovecot auth endpoint for AUTH (`inet:127.0.0.1:port` or a
    ///     socket path), or nil for no AUTH (XCLIENT LOGIN still works).
    ///   - settings: extra main.cf settings (`name=value`), applied last.
    static func start(
        directory: URL,
        smtpPort: UInt16,
        mailcloakEndpoint: String,
        saslPath: String? = nil,
        settings: [String] = []
    ) throws -> PostfixInstance {
        var arguments = ["start", directory.path, String(smtpPort), mailcloakEndpoint]
        if let saslPath {
            arguments += ["--sasl-path", saslPath]
        }
        arguments += settings
        try TestEnvironment.runChecked("/bin/bash", [script] + arguments, timeout: 60)
        return PostfixInstance(directory: directory, smtpPort: smtpPort, mailcloakEndpoint: mailcloakEndpoint)
    }

    /// Stops the instance and waits for its master process to exit.
    func stop() throws {
        try TestEnvironment.runChecked("/bin/bash", [Self.script, "stop", directory.path], timeout: 30)
    }

    /// Everything Postfix logged so far (maillog_file).
    func log() -> String {
        TestEnvironment.readText(logFile)
    }

    /// Folder that receives mail for a recipient in one of mailcloak's domains
    /// (final recipient, after alias expansion), one file per message.
    func mailboxFolder(_ address: String) -> URL {
        directory.appendingPathComponent("mail").appendingPathComponent(address.lowercased())
    }

    /// Folder that receives mail relayed to a recipient in another domain.
    func relayFolder(_ address: String) -> URL {
        directory.appendingPathComponent("relay").appendingPathComponent(address.lowercased())
    }

    /// Reads the messages stored in a mailbox or relay folder, oldest first.
    /// Each message starts with its mbox From_ line.
    func messages(in folder: URL) -> [String] {
        let keys: [URLResourceKey] = [.contentModificationDateKey]
        let files = (try? FileManager.default.contentsOfDirectory(
            at: folder, includingPropertiesForKeys: keys, options: [.skipsHiddenFiles]
        )) ?? []
        let dated = files.map { file -> (Date, URL) in
            let date = (try? file.resourceValues(forKeys: Set(keys)).contentModificationDate) ?? .distantPast
            return (date, file)
        }
        return dated.sorted { ($0.0, $0.1.lastPathComponent) < ($1.0, $1.1.lastPathComponent) }
            .map { TestEnvironment.readText($0.1) }
    }

    /// Waits until a folder contains at least `count` messages and returns them.
    ///
    /// Delivery runs after the SMTP session ends (queue manager, then pipe(8)),
    /// so a test that checks a mailbox must wait for it. A message file
    /// appears complete or not at all (it is renamed into place).
    func waitForMessages(in folder: URL, count: Int = 1, timeout: Double = 10) throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            let found = messages(in: folder)
            if found.count >= count {
                return found
            }
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        throw TestEnvironmentError.mailNotDelivered(path: folder.path, seconds: timeout)
    }
}

// MARK: - Private Dovecot (SASL only)

/// A private Dovecot auth service started by `scripts/testenv/dovecot.sh`.
struct DovecotInstance: Sendable {
    let directory: URL
    /// The value for Postfix's smtpd_sasl_path.
    let saslPath: String

    private static let script = TestEnvironment.scriptDirectory.appendingPathComponent("dovecot.sh").path

    /// Starts the auth service on 127.0.0.1:`authPort`.
    /// - Parameters:
    ///   - passwdFile: passwd-file for PLAIN and LOGIN (`user:{PLAIN}secret`),
    ///     readable by the dovecot user.
    ///   - introspectionURL: RFC 7662 endpoint that enables XOAUTH2 and
    ///     OAUTHBEARER; client credentials go in the URL's user info.
    static func start(
        directory: URL,
        authPort: UInt16,
        passwdFile: URL,
        introspectionURL: String? = nil
    ) throws -> DovecotInstance {
        try start(directory: directory, authPort: authPort, passdb: [passwdFile.path], introspectionURL: introspectionURL)
    }

    /// Starts the auth service on 127.0.0.1:`authPort` with PLAIN and LOGIN
    /// checked by `checkpassword`, a program the dovecot user can run.
    static func start(
        directory: URL,
        authPort: UInt16,
        checkpassword: String,
        introspectionURL: String? = nil
    ) throws -> DovecotInstance {
        try start(
            directory: directory, authPort: authPort, passdb: ["-", "--checkpassword", checkpassword],
            introspectionURL: introspectionURL)
    }

    private static func start(
        directory: URL, authPort: UInt16, passdb: [String], introspectionURL: String?
    ) throws -> DovecotInstance {
        var arguments = [script, "start", directory.path, String(authPort)] + passdb
        if let introspectionURL {
            arguments += ["--oauth2-introspection-url", introspectionURL]
        }
        try TestEnvironment.runChecked("/bin/bash", arguments, timeout: 30)
        return DovecotInstance(directory: directory, saslPath: "inet:127.0.0.1:\(authPort)")
    }

    /// Stops the Dovecot master and the auth processes it left.
    func stop() throws {
        try TestEnvironment.runChecked("/bin/bash", [Self.script, "stop", directory.path], timeout: 30)
    }

    func log() -> String {
        TestEnvironment.readText(directory.appendingPathComponent("dovecot.log"))
    }
}

// MARK: - SMTP replies and swaks

/// One SMTP reply: its code and its lines as sent, without CRLF
/// (for example `["550 5.1.1 <nobody@example.com>: Recipient address rejected: No such user"]`).
struct SMTPReply: Sendable, Equatable {
    let code: Int
    let lines: [String]

    /// The last line, which carries the final code and, for a one-line reply, the whole text.
    var lastLine: String { lines.last ?? "" }
}

/// The dialogue of one swaks run.
struct SwaksResult: Sendable {
    /// swaks's exit status (swaks(1), EXIT CODES): 0 when every reply was the
    /// expected one, 2 when the connection failed, 23 when MAIL FROM, 24 when
    /// every RCPT TO, and 28 when AUTH was rejected.
    let status: Int32
    /// The whole transcript, with swaks's prefixes (`->` sent, `<-` received).
    let transcript: String
    let replies: [SMTPReply]

    /// The server's reply lines in order, without swaks's prefixes.
    var serverLines: [String] { replies.flatMap(\.lines) }
}

enum Swaks {
    /// Runs swaks with the given arguments and returns its transcript and the server's replies.
    ///
    /// Pass `--ehlo client.test` (or another fixed name) so that helo_name does
    /// not depend on the machine, and `--quit-after RCPT` to stop before DATA.
    /// Password options show in the transcript; `--auth-hide-password` masks them.
    static func run(_ arguments: [String], timeout: Double = 60) throws -> SwaksResult {
        let result = try TestEnvironment.run("/usr/bin/swaks", arguments, timeout: timeout)
        let transcript = result.standardOutput + result.standardError
        return SwaksResult(status: result.status, transcript: transcript, replies: parseReplies(transcript))
    }

    /// Extracts the lines the server sent from a swaks transcript.
    ///
    /// swaks marks them `<- ` (expected), `<**` (unexpected, such as a
    /// rejection), `<~ ` and `<~*` (the same inside TLS), followed by one space.
    /// Lines with these marks that carry no reply code (swaks's own "Timeout
    /// ... waiting for server response") are left out.
    static func serverLines(in transcript: String) -> [String] {
        let marks = ["<- ", "<**", "<~ ", "<~*"]
        var lines: [String] = []
        // Swift reads CRLF as one Character, so split at every line end, not at "\n" alone.
        for line in transcript.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            guard line.count >= 4, marks.contains(String(line.prefix(3))) else { continue }
            let text = String(line.dropFirst(4))
            if replyCode(of: text) != nil {
                lines.append(text)
            }
        }
        return lines
    }

    /// Groups server lines into replies: `250-…` lines continue a reply and a
    /// `250 …` line ends it.
    static func parseReplies(_ transcript: String) -> [SMTPReply] {
        var replies: [SMTPReply] = []
        var pending: [String] = []
        for line in serverLines(in: transcript) {
            pending.append(line)
            if let code = replyCode(of: line), !isContinuation(line) {
                replies.append(SMTPReply(code: code, lines: pending))
                pending = []
            }
        }
        return replies
    }

    /// Returns the three-digit code at the start of a reply line, if any.
    static func replyCode(of line: String) -> Int? {
        let bytes = Array(line.utf8.prefix(4))
        guard bytes.count >= 3, bytes[0..<3].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        if bytes.count == 4 && bytes[3] != 0x20 && bytes[3] != 0x2D {
            return nil
        }
        return Int(String(decoding: bytes[0..<3], as: UTF8.self))
    }

    static func isContinuation(_ line: String) -> Bool {
        line.utf8.count >= 4 && Array(line.utf8)[3] == 0x2D
    }
}

// MARK: - Direct SMTP

/// A plain-text SMTP client session on loopback, for commands swaks cannot
/// send, such as `AUTH XOAUTH2`. Every read and write has a deadline.
///
/// Not thread-safe: use one session from one task.
final class SMTPSession {
    private let descriptor: Int32
    private var buffer: [UInt8] = []

    /// Maximum length of a reply line, in bytes (RFC 5321 allows 512).
    static let maxLineBytes = 4096
    /// Maximum number of lines in one reply.
    static let maxReplyLines = 100

    /// Connects to 127.0.0.1:`port`. Read the greeting with `readReply()`.
    /// - Parameter timeout: deadline for each read and write, in seconds.
    init(port: UInt16, timeout: Double = 30) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else {
            throw TestEnvironmentError.socketFailed(operation: "socket", errno: errno)
        }
        var deadline = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &deadline, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &deadline, socklen_t(MemoryLayout<timeval>.size))
        var address = TestEnvironment.loopbackAddress(port: port)
        let status = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            let error = errno
            close(descriptor)
            throw TestEnvironmentError.connectFailed(port: port, errno: error)
        }
    }

    deinit {
        close(descriptor)
    }

    /// Sends one command line (CRLF is added) and reads the reply.
    func command(_ line: String) throws -> SMTPReply {
        let bytes = Array((line + "\r\n").utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else {
                throw TestEnvironmentError.socketFailed(operation: "send", errno: errno)
            }
            sent += count
        }
        return try readReply()
    }

    /// Reads one complete reply, multi-line replies included.
    func readReply() throws -> SMTPReply {
        var lines: [String] = []
        while lines.count < Self.maxReplyLines {
            let line = try readLine()
            guard let code = Swaks.replyCode(of: line) else {
                throw TestEnvironmentError.invalidReply(line: line)
            }
            lines.append(line)
            if !Swaks.isContinuation(line) {
                return SMTPReply(code: code, lines: lines)
            }
        }
        throw TestEnvironmentError.replyTooLong(limit: Self.maxReplyLines)
    }

    private func readLine() throws -> String {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                var line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                if line.last == 0x0D {
                    line.removeLast()
                }
                return String(decoding: line, as: UTF8.self)
            }
            guard buffer.count <= Self.maxLineBytes else {
                throw TestEnvironmentError.replyTooLong(limit: Self.maxLineBytes)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else {
                // 0 is end of stream; -1 with EAGAIN is the read deadline.
                throw TestEnvironmentError.socketFailed(operation: "recv", errno: count == 0 ? ECONNRESET : errno)
            }
            buffer += chunk[..<count]
        }
    }

    /// Builds the initial response of `AUTH XOAUTH2` for a user and a bearer token.
    static func xoauth2InitialResponse(user: String, token: String) -> String {
        Data("user=\(user)\u{1}auth=Bearer \(token)\u{1}\u{1}".utf8).base64EncodedString()
    }
}
