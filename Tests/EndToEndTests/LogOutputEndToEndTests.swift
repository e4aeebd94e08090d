// Log output of `mailcloak serve` as configured in its log section: the
// share of policy decisions logged at info (log.decision_sample_rate), and
// lines sent as syslog datagrams to a UNIX datagram socket the test binds.
// The daemon gets no reachable database or identity provider, so it replies
// to every policy request with its temporary failure, a decision like any other.

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

private let policyRequest = "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@example.com\n"
    + "recipient=alice@example.com\nsasl_username=alice\n\n"

@Suite(.serialized)
struct LogOutputEndToEnd {
    /// Sends ten policy requests at log level info, stops the daemon, and counts the decision lines.
    @Test(arguments: [(0.0, 0), (1.0, 10), (0.5, 5)])
    func decisionSampleRateSetsInfoLines(rate: Double, expected: Int) throws {
        let daemon = try LogDaemon.start(name: "sample", logKeys: ["level: info", "decision_sample_rate: \(rate)"])
        defer { daemon.kill() }
        let socket = try #require(PlainSocket(port: daemon.port))

        let replies = (0..<10).map { _ in socket.exchange(policyRequest, until: "\n\n") }
        let status = daemon.stop()
        let decisions = daemon.log().split(separator: "\n").filter { $0.contains(" event=\"policy decision\" ") }

        #expect(replies == Array(repeating: "action=451 4.3.0 Temporary internal error\n\n", count: 10))
        #expect(status == 0)
        #expect(decisions.count == expected)
        #expect(decisions.allSatisfy { $0.contains(" level=info ") })
    }

    @Test func decisionLineCarriesRequestFields() throws {
        let daemon = try LogDaemon.start(name: "fields", logKeys: ["level: debug"])
        defer { daemon.kill() }
        let socket = try #require(PlainSocket(port: daemon.port))

        let reply = socket.exchange(policyRequest, until: "\n\n")
        let status = daemon.stop()
        let decision = daemon.log().split(separator: "\n").first { $0.contains(" event=\"policy decision\" ") }
        let fields = decision.map { LogEvent(line: $0) }

        #expect(reply == "action=451 4.3.0 Temporary internal error\n\n")
        #expect(status == 0)
        #expect(fields?["level"] == "debug")
        #expect(fields?["service"] == "policy")
        #expect(fields?["state"] == "RCPT")
        #expect(fields?["sasl.username"] == "alice")
        #expect(fields?["sender"] == "a@example.com")
        #expect(fields?["recipient"] == "alice@example.com")
        #expect(fields?["decision"] == "defer")
        #expect(fields?["reply"] == "451 4.3.0 Temporary internal error")
    }

    @Test func syslogOutputSendsDatagrams() throws {
        let directory = try TestEnvironment.makeScratchDirectory(prefix: "mailcloak-syslog")
        let receiver = try DatagramSocket(path: directory.appendingPathComponent("log.sock").path)
        let daemon = try LogDaemon.start(name: "syslog", logKeys: [
            "level: info", "output: syslog", "syslog_socket: \(receiver.path)", "syslog_facility: local3",
            "syslog_ident: mc-test",
        ], waitForStart: false)
        defer { daemon.kill() }
        let version = try TestEnvironment.run(TestDaemon.binary, ["version"]).standardOutput
            .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "mailcloak ", with: "")

        let starting = receiver.waitForDatagram(containing: "event=\"mailcloak starting\"", timeout: 20)
        let started = receiver.waitForDatagram(containing: "event=\"mailcloak started\"", timeout: 20)
        let status = daemon.stop()

        let expected = "<158>mc-test[\(daemon.pid)]: level=info event=\"mailcloak starting\" version=\(version)"
        #expect(starting.map { String(decoding: $0, as: UTF8.self) } == expected)
        #expect(started != nil)
        #expect(status == 0)
        #expect(!daemon.log().contains("mailcloak starting"))
    }
}

/// `mailcloak serve` with one plain TCP policy listener, an unreachable database and identity
/// provider, and its stderr in a file.
private enum LogDaemon {
    /// Starts the daemon with `logKeys` as its log section and, unless `waitForStart` is false,
    /// waits for its start line on stderr. Without that wait, it waits until the listener accepts connections.
    static func start(name: String, logKeys: [String], waitForStart: Bool = true) throws -> TestDaemon {
        let port = try TestEnvironment.freePorts(count: 1)
        let configuration = TestDaemon.unreachableBackendsConfiguration(
            listenerName: "log", port: port, threads: 1, serverKeys: ["allow_root: true"],
            metricsKeys: ["enabled: false"], logKeys: logKeys)
        let daemon = try TestDaemon.launch(
            name: "log-\(name)", port: port, metricsPort: nil, configuration: configuration)
        if waitForStart {
            try daemon.waitForStartLine()
        } else {
            try daemon.waitForListener()
        }
        return daemon
    }
}

/// A bound, non-blocking UNIX datagram socket in place of the syslog daemon.
private final class DatagramSocket {
    let path: String
    private let descriptor: Int32

    init(path: String) throws {
        self.path = path
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { throw TestEnvironmentError.socketFailed(operation: "socket", errno: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let code = errno
            close(descriptor)
            throw TestEnvironmentError.socketFailed(operation: "bind \(path)", errno: code)
        }
    }

    deinit {
        close(descriptor)
        unlink(path)
    }

    /// Reads datagrams until one contains `fragment` and returns it, or nil after `timeout` seconds.
    func waitForDatagram(containing fragment: String, timeout: Double) -> [UInt8]? {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                usleep(20_000)
                continue
            }
            let datagram = Array(buffer[..<count])
            if String(decoding: datagram, as: UTF8.self).contains(fragment) { return datagram }
        }
        return nil
    }
}
