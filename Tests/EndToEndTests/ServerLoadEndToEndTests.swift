// The daemon's server loop under connection load, run as `mailcloak serve`:
// thousands of idle connections at once, a client that never reads its
// replies, and a connection flood above server.max_connections. The daemon
// gets no reachable database or identity provider, so it replies to every
// policy request with its temporary failure, which is an exact reply to check.
// Counts come from the /metrics endpoint, which a free loopback port serves.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

private let prlimitPath = "/usr/bin/prlimit"
private let policyRequest = "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=alice@example.com\n\n"
private let tempfailReply = "action=451 4.3.0 Temporary internal error\n\n"

@Suite(.serialized)
struct ServerLoadEndToEnd {
    /// Idle connections open at once: about 20 Postfix nodes with 100 smtpd processes each.
    static let idleCount = 2000

    @Test func idleConnectionsKeepServing() throws {
        // The test process and the daemon each need a descriptor per connection.
        try raiseOpenFileLimit(to: Self.idleCount + 256)
        let daemon = try LoadDaemon.start(
            name: "idle",
            serverKeys: ["max_connections: 5000", "max_connections_per_source: 5000"],
            openFileLimit: Self.idleCount + 512)
        defer { daemon.kill() }

        var idle: [LoopbackClient] = []
        for _ in 0..<Self.idleCount {
            idle.append(try #require(LoopbackClient(port: daemon.port)))
        }
        let opened = try daemon.waitForMetric("mailcloak_connections_open \(Self.idleCount)")
        let fresh = try #require(LoopbackClient(port: daemon.port))

        #expect(opened)
        #expect(fresh.exchange(policyRequest) == tempfailReply)
        // Every 100th idle connection, from the first to the last accepted.
        for index in stride(from: 0, to: Self.idleCount, by: 100) {
            #expect(idle[index].exchange(policyRequest) == tempfailReply, "idle connection \(index)")
        }
        #expect(idle[Self.idleCount - 1].exchange(policyRequest) == tempfailReply)
        #expect(daemon.stop() == 0)
    }

    @Test func nonReadingClientIsClosed() throws {
        let daemon = try LoadDaemon.start(name: "no-read", serverKeys: [])
        defer { daemon.kill() }
        // A small receive buffer, so that the replies pile up in the daemon rather than in this process.
        let flood = try #require(LoopbackClient(port: daemon.port, receiveBufferBytes: 4096))
        let other = try #require(LoopbackClient(port: daemon.port))
        let requests = String(repeating: policyRequest, count: 64)

        // About 300 KiB of requests make about 190 KiB of replies: below the daemon's 1 MiB
        // output limit, so the flooding connection is still open while the other client sends a request.
        var written = 0
        while written < 300 * 1024, flood.write(requests) { written += requests.utf8.count }
        #expect(written >= 300 * 1024)
        #expect(other.exchange(policyRequest) == tempfailReply)
        #expect(try daemon.waitForMetric("mailcloak_connections_open 2"))

        // The client writes on until the daemon closes the connection. 256 MiB is far more than
        // the daemon's output limit plus both sockets' buffers.
        while written < 256 * 1024 * 1024, flood.write(requests) { written += requests.utf8.count }
        #expect(written < 256 * 1024 * 1024)
        #expect(try daemon.waitForMetric("mailcloak_connections_closed_total{reason=\"output_limit\"} 1"))
        #expect(try daemon.waitForMetric("mailcloak_connections_closed_total{reason=\"io_timeout\"} 0"))
        #expect(other.exchange(policyRequest) == tempfailReply)
        #expect(daemon.stop() == 0)
    }

    @Test func floodAboveMaxConnectionsRejected() throws {
        let limit = 40
        let extra = 25
        let daemon = try LoadDaemon.start(
            name: "flood", serverKeys: ["max_connections: \(limit)", "max_connections_per_source: 1000"])
        defer { daemon.kill() }

        var admitted: [LoopbackClient] = []
        for _ in 0..<limit {
            admitted.append(try #require(LoopbackClient(port: daemon.port)))
        }
        #expect(try daemon.waitForMetric("mailcloak_connections_open \(limit)"))
        // The kernel completes each connect; the daemon accepts the extra ones and closes them at once.
        var rejected: [LoopbackClient] = []
        for _ in 0..<extra {
            rejected.append(try #require(LoopbackClient(port: daemon.port)))
        }
        let closedAtOnce = rejected.filter { $0.readUntilClose() }.count

        #expect(closedAtOnce == extra)
        #expect(try daemon.waitForMetric("mailcloak_connections_rejected_total{reason=\"max_connections\"} \(extra)"))
        #expect(try daemon.waitForMetric("mailcloak_connections_open \(limit)"))
        #expect(admitted[0].exchange(policyRequest) == tempfailReply)
        #expect(admitted[limit - 1].exchange(policyRequest) == tempfailReply)

        // The flood ends: every connection closes, and a new client is admitted and gets its reply.
        admitted.removeAll()
        rejected.removeAll()
        #expect(try daemon.waitForMetric("mailcloak_connections_open 0"))
        let fresh = try #require(LoopbackClient(port: daemon.port))
        #expect(fresh.exchange(policyRequest) == tempfailReply)
        #expect(try daemon.waitForMetric("mailcloak_connections_rejected_total{reason=\"max_connections\"} \(extra)"))
        #expect(daemon.stop() == 0)
    }
}

/// Raises this process's soft RLIMIT_NOFILE to at least `count`, within the hard limit.
private func raiseOpenFileLimit(to count: Int) throws {
    var limit = rlimit()
    let resource = Int32(RLIMIT_NOFILE.rawValue)
    guard getrlimit(resource, &limit) == 0 else {
        throw StackSetupError.unexpectedOutput(command: "getrlimit(RLIMIT_NOFILE)", output: String(cString: strerror(errno)))
    }
    guard limit.rlim_cur < rlim_t(count) else { return }
    guard limit.rlim_max >= rlim_t(count) else {
        throw StackSetupError.unexpectedOutput(
            command: "setrlimit(RLIMIT_NOFILE)", output: "hard limit \(limit.rlim_max) is below the \(count) needed")
    }
    limit.rlim_cur = rlim_t(count)
    guard setrlimit(resource, &limit) == 0 else {
        throw StackSetupError.unexpectedOutput(command: "setrlimit(RLIMIT_NOFILE)", output: String(cString: strerror(errno)))
    }
}

/// `mailcloak serve` with one TCP policy listener, the metrics endpoint on the next port, and an
/// unreachable database and identity provider.
private enum LoadDaemon {
    /// Starts the daemon with `serverKeys` added to its `server` section and waits for its start line.
    /// The section allows root, because the tests may run as root.
    /// With `openFileLimit`, util-linux prlimit sets the daemon's RLIMIT_NOFILE.
    static func start(name: String, serverKeys: [String], openFileLimit: Int? = nil) throws -> TestDaemon {
        let port = try TestEnvironment.freePorts(count: 2)
        let configuration = TestDaemon.unreachableBackendsConfiguration(
            listenerName: "load", port: port, threads: 2, serverKeys: ["allow_root: true"] + serverKeys,
            metricsKeys: ["listen: \"127.0.0.1:\(port + 1)\""], logKeys: ["level: info"])
        var prefix: [String] = []
        if let openFileLimit {
            guard FileManager.default.isExecutableFile(atPath: prlimitPath) else {
                throw StackSetupError.unexpectedOutput(command: prlimitPath, output: "not installed (util-linux)")
            }
            prefix = [prlimitPath, "--nofile=\(openFileLimit):\(openFileLimit)"]
        }
        let daemon = try TestDaemon.launch(
            name: "load-\(name)", port: port, metricsPort: port + 1, configuration: configuration, prefix: prefix)
        try daemon.waitForStartLine()
        return daemon
    }
}
