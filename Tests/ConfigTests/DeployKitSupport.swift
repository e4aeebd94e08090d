// Helpers for DeployKitTests. They read the files under deploy/, walk their
// YAML trees, and run the checkers of systemd, HAProxy, Postfix and Dovecot
// with a deadline. Two small loopback peers, a socketmap responder and an
// SMTP client, bind or connect to 127.0.0.1 only.

import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Config

/// The repository root, three levels above this file (Tests/ConfigTests/DeployKitSupport.swift).
let deployKitRoot: String = {
    let parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    return parts.dropLast(3).joined(separator: "/")
}()

/// Errors of the helpers, with the command or path that failed.
struct DeployKitError: Error, CustomStringConvertible {
    let description: String
}

/// Reads a whole file as UTF-8 text; `path` is absolute or relative to the repository root.
func readDeployFile(_ path: String) throws -> String {
    let absolute = path.hasPrefix("/") ? path : deployKitRoot + "/" + path
    let descriptor = open(absolute, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
        throw DeployKitError(description: "failed to open \(absolute): \(String(cString: strerror(errno)))")
    }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count >= 0 else { throw DeployKitError(description: "failed to read \(absolute)") }
        if count == 0 { break }
        bytes += chunk[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes `text` to the file at the absolute `path`, replacing it.
func writeFile(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard descriptor >= 0 else {
        throw DeployKitError(description: "failed to create \(path): \(String(cString: strerror(errno)))")
    }
    defer { close(descriptor) }
    let bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let count = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { throw DeployKitError(description: "failed to write \(path)") }
        written += count
    }
}

/// Lists the names in a folder of the repository, sorted, without `.` and `..`.
func listDeployFolder(_ relativePath: String) throws -> [String] {
    guard let directory = opendir(deployKitRoot + "/" + relativePath) else {
        throw DeployKitError(description: "failed to list \(relativePath)")
    }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// Parses one file of the repository with the configuration loader's YAML reader.
func parseDeployYAML(_ relativePath: String) throws -> YAMLNode {
    guard let root = try YAMLDocument.parse(try readDeployFile(relativePath)) else {
        throw DeployKitError(description: "\(relativePath) holds no YAML document")
    }
    return root
}

extension YAMLNode {
    /// Returns the node at `keys` below this mapping, or nil when a key is missing or a node is no mapping.
    func child(_ keys: String...) -> YAMLNode? {
        var node = self
        for key in keys {
            guard case .mapping(let entries) = node.content, let entry = entries.first(where: { $0.key == key }) else {
                return nil
            }
            node = entry.value
        }
        return node
    }

    /// The items of a sequence; empty for any other node.
    var items: [YAMLNode] {
        if case .sequence(let items) = content { return items }
        return []
    }

    /// The keys of a mapping, in file order; empty for any other node.
    var keys: [String] {
        if case .mapping(let entries) = content { return entries.map(\.key) }
        return []
    }
}

/// Returns the first item of `sequence` whose `name` key has the value `name`.
func item(named name: String, in sequence: YAMLNode?) -> YAMLNode? {
    sequence?.items.first { $0.child("name")?.scalarText == name }
}

// MARK: - Running programs

/// The exit status and output of a finished program.
struct CommandResult: CustomStringConvertible {
    var status: Int32
    var output: String
    var errorOutput: String

    var description: String { "status \(status)\nstdout:\n\(output)\nstderr:\n\(errorOutput)" }
}

/// Returns the absolute path of `name` in PATH or the sbin folders, or nil when it is not installed.
func findExecutable(_ name: String) -> String? {
    let path = getenv("PATH").map { String(cString: $0) } ?? ""
    let folders = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
    for folder in folders where access(folder + "/" + name, X_OK) == 0 {
        return folder + "/" + name
    }
    return nil
}

/// Runs a program with an empty signal mask, standard input from /dev/null,
/// and its output captured in files under `scratch`. A program that runs past
/// `timeout` seconds gets SIGKILL, and the call throws.
func runCommand(
    _ executable: String, _ arguments: [String], scratch: String, timeout: Double = 60
) throws -> CommandResult {
    let outputPath = scratch + "/command.stdout"
    let errorPath = scratch + "/command.stderr"
    let processID = try spawnProcess(executable, arguments, outputPath: outputPath, errorPath: errorPath)

    let deadline = monotonicNow() + timeout
    var waitStatus: Int32 = 0
    while waitpid(processID, &waitStatus, WNOHANG) == 0 {
        if monotonicNow() > deadline {
            kill(processID, SIGKILL)
            waitpid(processID, &waitStatus, 0)
            throw DeployKitError(description: "\(executable) \(arguments) timed out after \(timeout) s")
        }
        usleep(10_000)
    }
    let exited = waitStatus & 0x7f == 0
    return CommandResult(
        status: exited ? (waitStatus >> 8) & 0xff : 128 + (waitStatus & 0x7f),
        output: (try? readDeployFile(outputPath)) ?? "",
        errorOutput: (try? readDeployFile(errorPath)) ?? ""
    )
}

/// Starts a long-running program with the same clean signal state as `runCommand`, its
/// output going to `outputPath`, and returns its process id at once. Stop it with `stopProcess`.
func launchProcess(_ executable: String, _ arguments: [String], outputPath: String) throws -> pid_t {
    try spawnProcess(executable, arguments, outputPath: outputPath, errorPath: nil)
}

/// Starts `executable` with standard input from /dev/null, standard output to `outputPath` and
/// standard error to `errorPath`, or to `outputPath` too when it is nil; returns its process id.
private func spawnProcess(
    _ executable: String, _ arguments: [String], outputPath: String, errorPath: String?
) throws -> pid_t {
    var fileActions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fileActions)
    defer { posix_spawn_file_actions_destroy(&fileActions) }
    posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&fileActions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    if let errorPath {
        posix_spawn_file_actions_addopen(&fileActions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    } else {
        posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
    }

    // The test runner may block signals, and a child inherits the mask: give
    // it an empty mask and default actions, so that it can be stopped.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var emptyMask = sigset_t()
    sigemptyset(&emptyMask)
    posix_spawnattr_setsigmask(&attributes, &emptyMask)
    var defaultActions = sigset_t()
    sigemptyset(&defaultActions)
    for signal in [SIGHUP, SIGINT, SIGPIPE, SIGTERM, SIGCHLD] { sigaddset(&defaultActions, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaultActions)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var processID: pid_t = 0
    let spawnStatus = posix_spawn(&processID, executable, &fileActions, &attributes, argv, environ)
    guard spawnStatus == 0 else {
        throw DeployKitError(description: "failed to start \(executable): \(String(cString: strerror(spawnStatus)))")
    }
    return processID
}

/// Sends SIGTERM to a process started by `launchProcess`, waits up to 10 s, then sends SIGKILL.
func stopProcess(_ processID: pid_t) {
    var status: Int32 = 0
    kill(processID, SIGTERM)
    let deadline = monotonicNow() + 10
    while waitpid(processID, &status, WNOHANG) == 0 {
        if monotonicNow() > deadline {
            kill(processID, SIGKILL)
            waitpid(processID, &status, 0)
            return
        }
        usleep(10_000)
    }
}

/// Seconds on the monotonic clock.
func monotonicNow() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// A private folder under /tmp, removed with everything in it by `remove()`.
struct ScratchFolder {
    let path: String

    init() throws {
        var template = Array("/tmp/mc-deploykit-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw DeployKitError(description: "mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        path = String(cString: created)
    }

    func remove() {
        _ = try? runCommand("/bin/rm", ["-rf", path], scratch: "/tmp", timeout: 30)
    }
}

// MARK: - Loopback peers

/// Opens a TCP socket bound to a loopback address (127.0.0.1 unless `host` names
/// another address in 127.0.0.0/8), on `port` or a free port when it is 0. With
/// `listening` false the port stays reserved but refuses connections, which
/// stands for a service that is down.
func bindLoopback(
    listening: Bool, host: String = "127.0.0.1", port: UInt16 = 0
) throws -> (descriptor: Int32, port: UInt16) {
    precondition(host.hasPrefix("127."), "test sockets bind loopback addresses only")
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard descriptor >= 0 else { throw DeployKitError(description: "socket failed") }
    var reuse: Int32 = 1
    setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr(host)
    address.sin_port = port.bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
            bind(descriptor, generic, length) == 0 && getsockname(descriptor, generic, &length) == 0
        }
    }
    guard bound, !listening || listen(descriptor, 16) == 0 else {
        close(descriptor)
        throw DeployKitError(description: "failed to bind \(host):\(port): \(String(cString: strerror(errno)))")
    }
    return (descriptor, UInt16(bigEndian: address.sin_port))
}

/// Sets a receive and send timeout on a socket, so no read or write waits longer.
func setSocketTimeout(_ descriptor: Int32, seconds: Int) {
    var limit = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
}

/// A socketmap server on 127.0.0.1 that replies from a fixed table, one
/// connection at a time, on its own thread. It serves the three maps that
/// mailcloak serves (`domain`, `alias`, `mailbox`) and replies `PERM` for any
/// other map name, so a lookup through a misspelled map name fails.
final class SocketmapResponder: @unchecked Sendable {
    // Unchecked: `listener` and `answers` are set once in init and only read after.
    let port: UInt16
    private let listener: Int32
    private let answers: [String: String]
    private var thread = pthread_t()

    /// Largest request accepted, as Postfix 3.12's socketmap_max_query_size.
    static let maxRequestSize = 10000

    /// - Parameter answers: the data of the `OK` reply by request payload (`NAME KEY`); other keys get `NOTFOUND`.
    init(answers: [String: String]) throws {
        (listener, port) = try bindLoopback(listening: true)
        self.answers = answers
        let box = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { argument in
            let responder = Unmanaged<SocketmapResponder>.fromOpaque(argument!).takeRetainedValue()
            responder.acceptLoop()
            return nil
        }, box)
    }

    /// Closes the listener and waits for the thread to end.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        pthread_join(thread, nil)
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return
            }
            setSocketTimeout(connection, seconds: 10)
            serve(connection)
            close(connection)
        }
    }

    /// Replies to netstring requests until the client closes or sends a malformed one.
    private func serve(_ connection: Int32) {
        var buffer: [UInt8] = []
        while let payload = nextNetstring(connection, &buffer) {
            let reply = answer(String(decoding: payload, as: UTF8.self))
            let bytes = Array("\(reply.utf8.count):\(reply),".utf8)
            guard bytes.withUnsafeBytes({ send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count
            else { return }
        }
    }

    private func answer(_ payload: String) -> String {
        guard let space = payload.firstIndex(of: " ") else { return "PERM missing key" }
        let name = String(payload[..<space])
        guard ["domain", "alias", "mailbox"].contains(name) else { return "PERM unknown map \(name)" }
        return answers[payload].map { "OK " + $0 } ?? "NOTFOUND "
    }

    private func nextNetstring(_ connection: Int32, _ buffer: inout [UInt8]) -> [UInt8]? {
        while true {
            if let colon = buffer.firstIndex(of: UInt8(ascii: ":")) {
                guard let length = Int(String(decoding: buffer[..<colon], as: UTF8.self)),
                    length <= Self.maxRequestSize
                else { return nil }
                let end = colon + 1 + length
                if buffer.count > end {
                    guard buffer[end] == UInt8(ascii: ",") else { return nil }
                    let payload = Array(buffer[(colon + 1)..<end])
                    buffer.removeFirst(end + 1)
                    return payload
                }
            } else if buffer.count > 6 {
                return nil
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return nil }
            buffer += chunk[..<count]
        }
    }
}

/// A line-based SMTP client on 127.0.0.1 with a 30 s deadline on each read and write.
struct SMTPClient {
    private let descriptor: Int32
    private var pending: [UInt8] = []

    init(port: UInt16) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw DeployKitError(description: "socket failed") }
        setSocketTimeout(descriptor, seconds: 30)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else {
            Glibc.close(descriptor)
            throw DeployKitError(description: "failed to connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
    }

    func close() { Glibc.close(descriptor) }

    /// Sends one command (CRLF added) and returns the whole reply, lines joined with "\n".
    mutating func send(_ command: String) throws -> String {
        let bytes = Array((command + "\r\n").utf8)
        guard bytes.withUnsafeBytes({ Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count
        else { throw DeployKitError(description: "failed to send \(command)") }
        return try readReply()
    }

    /// Reads one reply: lines until one whose fourth character is a space.
    mutating func readReply() throws -> String {
        var lines: [String] = []
        while true {
            let line = try readLine()
            lines.append(line)
            if line.count < 4 || line[line.index(line.startIndex, offsetBy: 3)] == " " {
                return lines.joined(separator: "\n")
            }
        }
    }

    private mutating func readLine() throws -> String {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeFirst(newline + 1)
                return line.hasSuffix("\r") ? String(line.dropLast()) : line
            }
            guard pending.count < 4096 else { throw DeployKitError(description: "SMTP reply line too long") }
            var chunk = [UInt8](repeating: 0, count: 1024)
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw DeployKitError(description: "SMTP reply missing: the server closed the connection or timed out") }
            pending += chunk[..<count]
        }
    }
}

/// A TCP server on a loopback address that records the first bytes of each
/// connection, writes a fixed reply and closes it, one connection at a time on
/// its own thread. It stands for a backend behind HAProxy: a mutual-TLS
/// listener (empty reply) or a metrics endpoint (an HTTP reply).
final class RecordingServer: @unchecked Sendable {
    // Unchecked: `received` is only touched under `lock`; the other fields are set once in init.
    let port: UInt16
    private let listener: Int32
    private let reply: [UInt8]
    private var thread = pthread_t()
    private var lock = pthread_mutex_t()
    private var received: [[UInt8]] = []

    /// Most bytes recorded from one connection.
    static let maxRecordedBytes = 4096

    init(host: String, port: UInt16, reply: String) throws {
        (listener, self.port) = try bindLoopback(listening: true, host: host, port: port)
        self.reply = Array(reply.utf8)
        pthread_mutex_init(&lock, nil)
        let box = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { argument in
            let server = Unmanaged<RecordingServer>.fromOpaque(argument!).takeRetainedValue()
            server.acceptLoop()
            return nil
        }, box)
    }

    /// The first bytes of every connection so far, in accept order.
    var connections: [[UInt8]] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return received
    }

    /// Closes the listener and waits for the thread to end.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        pthread_join(thread, nil)
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return
            }
            setSocketTimeout(connection, seconds: 2)
            let bytes = readRequest(connection)
            pthread_mutex_lock(&lock)
            received.append(bytes)
            pthread_mutex_unlock(&lock)
            _ = reply.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(connection)
        }
    }

    /// Reads until an HTTP head ends, 32 bytes arrived (a PROXY v2 header and
    /// some data), the peer closes, or the 2 s socket timeout passes.
    private func readRequest(_ connection: Int32) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        while bytes.count < Self.maxRecordedBytes {
            let count = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            bytes += chunk[..<count]
            let text = String(decoding: bytes, as: UTF8.self)
            if text.hasPrefix("GET ") ? text.contains("\r\n\r\n") : bytes.count >= 32 { break }
        }
        return bytes
    }
}

/// Sends one command to a UNIX stream socket (such as HAProxy's runtime API) and
/// returns everything the server writes until it closes, at most 1 MiB.
func queryUnixSocket(_ path: String, _ command: String) throws -> String {
    let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard descriptor >= 0 else { throw DeployKitError(description: "socket failed") }
    defer { close(descriptor) }
    setSocketTimeout(descriptor, seconds: 5)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let pathBytes = Array(path.utf8)
    guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        throw DeployKitError(description: "socket path too long: \(path)")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
    let connected = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
        }
    }
    guard connected else { throw DeployKitError(description: "failed to connect to \(path)") }
    let request = Array((command + "\n").utf8)
    _ = request.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 8192)
    while bytes.count < 1 << 20 {
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count <= 0 { break }
        bytes += chunk[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Opens a TCP connection to 127.0.0.1:`port`, sends `text` and closes it.
func sendOnce(port: UInt16, _ text: String) throws {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard descriptor >= 0 else { throw DeployKitError(description: "socket failed") }
    defer { close(descriptor) }
    setSocketTimeout(descriptor, seconds: 5)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = port.bigEndian
    let connected = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
    guard connected else { throw DeployKitError(description: "failed to connect to 127.0.0.1:\(port)") }
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    // Wait for the backend's close, so that HAProxy has forwarded the data before this side closes.
    var sink = [UInt8](repeating: 0, count: 64)
    _ = sink.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
}
