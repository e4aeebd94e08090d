// Clients that the mutual-TLS listener must reject, for the end-to-end
// suite. `openssl s_client` runs with pipes on its standard input and
// output, so a test can send a request, read the reply and then end the
// session. A raw TCP socket sends arbitrary bytes and waits for the server
// to close. A CA made on the spot issues a client certificate that no
// listener trusts. The log helpers find the events the server wrote. Every
// read and wait has a deadline.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// How `openssl s_client` ended: its exit status, everything it printed, and
/// the reasons of the OpenSSL errors it reported.
struct SClientResult: Sendable {
    let status: Int32
    let standardOutput: String
    let standardError: String

    /// The reason field of each OpenSSL error line on standard error, such as
    /// `tlsv1 alert unknown ca` from
    /// `40C7…:error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:…:SSL alert number 48`.
    var errorReasons: [String] {
        standardError.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", maxSplits: 6, omittingEmptySubsequences: false)
            guard fields.count >= 6, fields[1] == "error" else { return nil }
            return String(fields[5])
        }
    }
}

/// A running `/usr/bin/openssl s_client` session to the test listener.
///
/// Standard input and output are pipes held by the test, standard error goes
/// to a file. Not thread-safe: use one session from one thread.
final class SClientSession {
    private let pid: pid_t
    private var input: Int32
    private var output: Int32
    private let errorFile: URL
    private var received: [UInt8] = []
    private var outputEnded = false
    private var result: SClientResult?

    /// Maximum number of bytes kept from s_client's standard output.
    static let maxOutputBytes = 65536

    /// Starts `openssl s_client` against 127.0.0.1:`port`.
    /// - Parameters:
    ///   - arguments: options after `-connect 127.0.0.1:PORT`.
    ///   - scratch: folder for the standard error file.
    /// - Throws: `TestEnvironmentError.socketFailed` or `.launchFailed`.
    init(port: UInt16, arguments: [String], scratch: URL) throws {
        var inputPipe: [Int32] = [-1, -1]
        var outputPipe: [Int32] = [-1, -1]
        guard pipe(&inputPipe) == 0 else {
            throw TestEnvironmentError.socketFailed(operation: "pipe", errno: errno)
        }
        guard pipe(&outputPipe) == 0 else {
            let error = errno
            inputPipe.forEach { Glibc.close($0) }
            throw TestEnvironmentError.socketFailed(operation: "pipe", errno: error)
        }
        // Other children must not inherit the test's pipe ends. dup2 clears the flag on descriptors 0 and 1.
        for descriptor in inputPipe + outputPipe { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        errorFile = scratch.appendingPathComponent("s_client-\(UUID().uuidString.prefix(8)).err")
        let executable = "/usr/bin/openssl"
        let argv = [executable, "s_client", "-connect", "127.0.0.1:\(port)"] + arguments

        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_adddup2(&fileActions, inputPipe[0], 0)
        posix_spawn_file_actions_adddup2(&fileActions, outputPipe[1], 1)
        posix_spawn_file_actions_addopen(&fileActions, 2, errorFile.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The test runner blocks most signals, so s_client gets an empty mask and the default actions.
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaultActions = sigset_t()
        sigemptyset(&defaultActions)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP] { sigaddset(&defaultActions, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaultActions)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let cArguments = argv.map { strdup($0) } + [nil]
        let environment = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArguments.forEach { free($0) }
            environment.forEach { free($0) }
        }
        var child: pid_t = 0
        let status = posix_spawn(&child, executable, &fileActions, &attributes, cArguments, environment)
        Glibc.close(inputPipe[0])
        Glibc.close(outputPipe[1])
        guard status == 0 else {
            Glibc.close(inputPipe[1])
            Glibc.close(outputPipe[0])
            throw TestEnvironmentError.launchFailed(
                command: argv.joined(separator: " "), reason: String(cString: strerror(status)))
        }
        pid = child
        input = inputPipe[1]
        output = outputPipe[0]
    }

    deinit {
        if result == nil { _ = finish(timeout: 2) }
    }

    /// Writes `text` to s_client's standard input. Returns false when s_client no longer reads it.
    @discardableResult
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard input >= 0 else { return false }
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.write(input, $0.baseAddress, $0.count) }
            guard count > 0 else { return false }
            sent += count
        }
        return true
    }

    /// Reads standard output until it ends with `terminator`, s_client closes
    /// it, or `timeout` seconds pass, and returns everything read so far.
    func read(until terminator: String, timeout: Double = 10) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        let ending = Array(terminator.utf8)
        while !outputEnded {
            if !ending.isEmpty, received.count >= ending.count, received.suffix(ending.count).elementsEqual(ending) {
                break
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0, readOnce(timeout: remaining) else { break }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Closes s_client's standard input, reads its output to the end and waits
    /// for it to exit. After `timeout` seconds it is killed, and the status is
    /// then 128 + the signal number.
    func finish(timeout: Double = 10) -> SClientResult {
        if let result { return result }
        closeInput()
        return waitForExit(timeout: timeout)
    }

    /// Waits for s_client to exit on its own, with standard input still open, so
    /// that it reports what the server sent rather than its own end of input.
    func waitForExit(timeout: Double = 10) -> SClientResult {
        if let result { return result }
        let deadline = Date().addingTimeInterval(timeout)
        _ = read(until: "", timeout: timeout)
        var status = TestEnvironment.exitStatus(of: pid)
        while status == nil, Date() < deadline {
            usleep(10_000)
            status = TestEnvironment.exitStatus(of: pid)
        }
        if status == nil {
            kill(pid, SIGKILL)
            status = TestEnvironment.terminate(pid, timeout: 2)
        }
        closeInput()
        if output >= 0 {
            Glibc.close(output)
            output = -1
        }
        let finished = SClientResult(
            status: status ?? -1, standardOutput: String(decoding: received, as: UTF8.self),
            standardError: TestEnvironment.readText(errorFile))
        try? FileManager.default.removeItem(at: errorFile)
        result = finished
        return finished
    }

    private func closeInput() {
        if input >= 0 {
            Glibc.close(input)
            input = -1
        }
    }

    /// Waits up to `timeout` seconds for output and appends it. Returns false on a timeout, end of output or an error.
    private func readOnce(timeout: Double) -> Bool {
        var descriptor = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, Int32(min(timeout * 1000, 60_000).rounded(.up)))
        if ready < 0 && errno == EINTR { return true }
        guard ready > 0 else { return false }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = chunk.withUnsafeMutableBytes { Glibc.read(output, $0.baseAddress, $0.count) }
        guard count > 0 else {
            outputEnded = true
            return false
        }
        received += chunk[0..<count]
        if received.count > Self.maxOutputBytes {
            received.removeFirst(received.count - Self.maxOutputBytes)
        }
        return true
    }
}

/// How a raw connection ended from the client's side.
enum RawSocketEnding: Equatable, Sendable {
    /// The server closed the connection (end of stream or reset) after sending these bytes.
    case closed(received: [UInt8])
    /// The deadline passed with the connection still open.
    case stillOpen(received: [UInt8])
    /// A socket call failed with this errno.
    case failed(errno: Int32)
}

/// A blocking TCP connection to 127.0.0.1 that sends raw bytes, for clients
/// that speak no TLS or stop in the middle of a handshake.
final class RawSocket {
    private var descriptor: Int32
    /// The local port, which the server logs as the peer's (`peer=127.0.0.1:PORT`).
    let localPort: UInt16

    init?(port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = TestEnvironment.loopbackAddress(port: port)
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &local) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard connected == 0, named == 0 else {
            Glibc.close(fd)
            return nil
        }
        descriptor = fd
        localPort = UInt16(bigEndian: local.sin_port)
    }

    deinit { close() }

    func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }

    /// The peer as mailcloak logs it.
    var peer: String { "127.0.0.1:\(localPort)" }

    /// Sends every byte. Returns false when a send fails.
    func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard count > 0 else { return false }
            sent += count
        }
        return true
    }

    /// Reads until the server closes the connection or `timeout` seconds pass,
    /// keeping at most 4096 received bytes.
    func waitForClose(timeout: Double) -> RawSocketEnding {
        let deadline = Date().addingTimeInterval(timeout)
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return .stillOpen(received: received) }
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, Int32((remaining * 1000).rounded(.up)))
            if ready < 0 {
                if errno == EINTR { continue }
                return .failed(errno: errno)
            }
            guard ready > 0 else { return .stillOpen(received: received) }
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count == 0 || (count < 0 && errno == ECONNRESET) { return .closed(received: received) }
            guard count > 0 else { return .failed(errno: errno) }
            received += chunk[0..<min(count, 4096 - received.count)]
        }
    }
}

/// A client certificate from a CA made for one test, which no listener trusts.
/// The certificate claims node mx1's identities (CN, DNS and SPIFFE URI), so a
/// listener that matched access rules before checking the chain would let it in.
struct ForeignClientCertificate {
    let certificate: URL
    let key: URL

    /// Creates the CA and the client certificate in `directory` with the openssl command line.
    static func make(in directory: URL) throws -> ForeignClientCertificate {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.path
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try TestEnvironment.runChecked("/usr/bin/openssl", ["req", "-x509", "-new"] + curve + [
            "-keyout", "\(path)/foreign-ca.key", "-out", "\(path)/foreign-ca.crt", "-days", "2",
            "-subj", "/CN=foreign test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        try TestEnvironment.runChecked("/usr/bin/openssl", ["req", "-new"] + curve + [
            "-keyout", "\(path)/foreign-mx1.key", "-out", "\(path)/foreign-mx1.csr", "-subj", "/CN=mx1",
        ])
        let extensions = directory.appendingPathComponent("foreign-mx1.ext")
        try """
        basicConstraints=critical,CA:FALSE
        keyUsage=critical,digitalSignature
        extendedKeyUsage=clientAuth
        subjectAltName=DNS:mx1,URI:spiffe://mail.example/node/mx1

        """.write(to: extensions, atomically: true, encoding: .utf8)
        try TestEnvironment.runChecked("/usr/bin/openssl", [
            "x509", "-req", "-in", "\(path)/foreign-mx1.csr", "-CA", "\(path)/foreign-ca.crt",
            "-CAkey", "\(path)/foreign-ca.key", "-CAcreateserial", "-out", "\(path)/foreign-mx1.crt", "-days", "2",
            "-extfile", extensions.path,
        ])
        return ForeignClientCertificate(
            certificate: directory.appendingPathComponent("foreign-mx1.crt"),
            key: directory.appendingPathComponent("foreign-mx1.key"))
    }
}

/// One line of mailcloak's key=value log, split into its fields
/// (`event`, `level`, `conn.id`, `peer`, `reason`, …), with quoted values unescaped.
struct LogEvent: Sendable, Equatable {
    let fields: [String: String]

    subscript(_ key: String) -> String? { fields[key] }

    /// Parses a line as `LogLineFormatter.keyValue` writes it.
    init(line: Substring) {
        var fields: [String: String] = [:]
        var rest = line[...]
        while let equals = rest.firstIndex(of: "=") {
            let key = String(rest[..<equals]).trimmingCharacters(in: .whitespaces)
            rest = rest[rest.index(after: equals)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaping = false
                while let character = rest.first {
                    rest = rest.dropFirst()
                    if escaping {
                        value.append(character == "n" ? "\n" : character)
                        escaping = false
                    } else if character == "\\" {
                        escaping = true
                    } else if character == "\"" {
                        break
                    } else {
                        value.append(character)
                    }
                }
            } else {
                let end = rest.firstIndex(of: " ") ?? rest.endIndex
                value = String(rest[..<end])
                rest = rest[end...]
            }
            fields[key] = value
        }
        self.fields = fields
    }
}

extension TLSStack {
    /// Measures the log's length in bytes, to pass to ``waitForEvent(after:matching:timeout:)``.
    func logMark() -> Int { log().utf8.count }

    /// Waits for the first complete log line written after `mark` whose fields
    /// include every pair of `matching`, and returns it, or nil after `timeout` seconds.
    func waitForEvent(after mark: Int, matching: [String: String], timeout: Double = 10) -> LogEvent? {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if let event = events(after: mark, matching: matching).first { return event }
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        return nil
    }

    /// Lists the complete log lines written after `mark` whose fields include every pair of `matching`.
    func events(after mark: Int, matching: [String: String]) -> [LogEvent] {
        let text = String(decoding: Array(log().utf8.dropFirst(mark)), as: UTF8.self)
        // The last piece is an unfinished line unless the text ends with a newline.
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            .map { LogEvent(line: $0) }
            .filter { event in matching.allSatisfy { event[$0.key] == $0.value } }
    }

    /// Waits for the `connection closed` event of the connection that `event` names (its `conn.id`).
    func waitForClosedEvent(after mark: Int, of event: LogEvent?) -> LogEvent? {
        guard let connection = event?["conn.id"] else { return nil }
        return waitForEvent(after: mark, matching: ["event": "connection closed", "conn.id": connection])
    }
}
