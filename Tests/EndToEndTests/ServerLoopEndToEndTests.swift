// The daemon's server loop under stress, run as `mailcloak serve`: accept
// errors when the process runs out of file descriptors (set with util-linux
// prlimit), and the drain on SIGTERM while clients send requests. The daemon
// gets no reachable database or identity provider, so it replies to every policy
// request with its temporary failure, which is enough to count replies.

import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

private let prlimitPath = "/usr/bin/prlimit"
private let policyRequest = "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=alice@example.com\n\n"
private let tempfailReply = "action=451 4.3.0 Temporary internal error\n\n"

@Suite(.serialized)
struct ServerLoopEndToEnd {
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: prlimitPath)))
    func acceptErrorsPauseAndRecover() throws {
        let daemon = try LoopDaemon.start(name: "fd-limit", prefix: [prlimitPath, "--nofile=64:64"])
        defer { daemon.kill() }
        let keeper = try #require(LoopbackClient(port: daemon.port))
        #expect(keeper.exchange(policyRequest) == tempfailReply)

        // More connections than the daemon has descriptors: the kernel queues them, accept fails.
        var flood: [LoopbackClient] = []
        for _ in 0..<120 {
            if let socket = LoopbackClient(port: daemon.port) { flood.append(socket) }
        }
        #expect(daemon.waitForLog("event=\"accept failed, pausing listener\"", "errno=24"))
        #expect(keeper.exchange(policyRequest) == tempfailReply)
        // Keep the descriptors used up for a while, so the listener pauses more than once.
        usleep(300_000)
        #expect(keeper.exchange(policyRequest) == tempfailReply)

        flood.removeAll()
        #expect(daemon.waitForLog("event=\"accepting again after accept errors\""))
        let fresh = try #require(LoopbackClient(port: daemon.port))
        #expect(fresh.exchange(policyRequest) == tempfailReply)
        #expect(daemon.stop() == 0)
    }

    @Test func sigtermAnswersEveryReceivedRequest() throws {
        let daemon = try LoopDaemon.start(name: "drain", prefix: [])
        defer { daemon.kill() }
        let written = Atomic<Int>(0)
        let answered = Atomic<Int>(0)
        let unanswered = Atomic<Int>(0)
        let clients = 4
        let finished = Atomic<Int>(0)
        for _ in 0..<clients {
            let port = daemon.port
            Thread.detachNewThread {
                defer { finished.add(1, ordering: .relaxed) }
                guard let socket = LoopbackClient(port: port) else { return }
                // Sends requests until the daemon closes the connection. A close seen before
                // writing ends the client. A request written and then left without a reply is lost.
                for _ in 0..<100_000 {
                    if socket.isClosedByPeer() { return }
                    guard socket.write(policyRequest) else { return }
                    written.add(1, ordering: .relaxed)
                    if socket.read(until: "\n\n") == tempfailReply {
                        answered.add(1, ordering: .relaxed)
                    } else {
                        unanswered.add(1, ordering: .relaxed)
                        return
                    }
                    usleep(2000)
                }
            }
        }
        for _ in 0..<1000 where written.load(ordering: .relaxed) < 200 { usleep(10_000) }
        #expect(written.load(ordering: .relaxed) >= 200)
        daemon.signal(SIGTERM)
        let status = daemon.waitForExit(timeout: 15)
        while finished.load(ordering: .relaxed) < clients { usleep(10_000) }

        #expect(status == 0)
        #expect(unanswered.load(ordering: .relaxed) == 0)
        #expect(answered.load(ordering: .relaxed) == written.load(ordering: .relaxed))
        #expect(daemon.log().contains("event=\"draining connections\""))
        #expect(!daemon.log().contains("drain timeout passed"))
    }

    @Test func sighupLogsAppliedAndRestartKeys() throws {
        let daemon = try LoopDaemon.start(name: "reload", prefix: [])
        defer { daemon.kill() }
        let original = try String(contentsOf: daemon.configFile, encoding: .utf8)
        let edited = original
            .replacingOccurrences(of: "  worker_threads: 2\n", with: "  worker_threads: 3\n")
            .replacingOccurrences(of: "  level: info\n", with: "  level: debug\n")
        try edited.write(to: daemon.configFile, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)

        #expect(daemon.waitForLog(
            "event=\"configuration reloaded\"", "changed=log", "restart_needed=server.worker_threads"))
        let socket = try #require(LoopbackClient(port: daemon.port))
        #expect(socket.exchange(policyRequest) == tempfailReply)
        #expect(daemon.stop() == 0)
    }

    @Test func sighupWithBrokenFileKeepsRunning() throws {
        let daemon = try LoopDaemon.start(name: "reload-broken", prefix: [])
        defer { daemon.kill() }
        try "listeners: [".write(to: daemon.configFile, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)

        #expect(daemon.waitForLog("event=\"reload failed, keeping the running configuration\""))
        let socket = try #require(LoopbackClient(port: daemon.port))
        #expect(socket.exchange(policyRequest) == tempfailReply)
        #expect(daemon.stop() == 0)
    }

    @Test func drainTimeoutEndsStalledConnection() throws {
        let daemon = try LoopDaemon.start(name: "drain-timeout", prefix: [], serverKeys: ["drain_timeout: 1s"])
        defer { daemon.kill() }
        let idle = try #require(LoopbackClient(port: daemon.port))
        let stalled = try #require(LoopbackClient(port: daemon.port))
        #expect(idle.exchange(policyRequest) == tempfailReply)
        // A whole request first, so the daemon has accepted the connection before the signal.
        #expect(stalled.exchange(policyRequest) == tempfailReply)
        // Half a request: the daemon waits for the rest until io_timeout (30 s), longer than the drain.
        #expect(stalled.write("request=smtpd_access_policy\n"))
        daemon.signal(SIGTERM)

        #expect(daemon.waitForExit(timeout: 15) == 0)
        #expect(daemon.log().contains("event=\"drain timeout passed, closing remaining connections\" count=1"))
    }

    @Test func secondSigtermEndsDrain() throws {
        let daemon = try LoopDaemon.start(name: "drain-twice", prefix: [], serverKeys: ["drain_timeout: 1h"])
        defer { daemon.kill() }
        let stalled = try #require(LoopbackClient(port: daemon.port))
        // A whole request first, so the daemon has accepted the connection before the signal.
        #expect(stalled.exchange(policyRequest) == tempfailReply)
        #expect(stalled.write("request=smtpd_access_policy\n"))
        daemon.signal(SIGTERM)
        #expect(daemon.waitForLog("event=\"draining connections\""))
        daemon.signal(SIGTERM)

        #expect(daemon.waitForExit(timeout: 15) == 0)
        #expect(daemon.log().contains("event=\"drain interrupted, closing remaining connections\" count=1"))
    }
}

@Suite(.serialized, .enabled(if: getuid() == 0, "switching users needs root"))
struct PrivilegeDropEndToEnd {
    @Test func serverUserSwitchesAfterBind() throws {
        let daemon = try LoopDaemon.start(name: "user", prefix: [], serverKeys: ["user: nobody", "group: nogroup"])
        defer { daemon.kill() }
        let socket = try #require(LoopbackClient(port: daemon.port))

        #expect(socket.exchange(policyRequest) == tempfailReply)
        #expect(daemon.ids("Uid") == "65534 65534 65534 65534")
        #expect(daemon.ids("Gid") == "65534 65534 65534 65534")
        #expect(daemon.waitForLog("event=\"switched user and group\"", "user=nobody"))
        #expect(daemon.stop() == 0)
    }

    @Test func unknownServerUserFailsStart() throws {
        let daemon = try LoopDaemon.launch(name: "no-user", prefix: [], serverKeys: ["user: mailcloak-no-such-user"])
        defer { daemon.kill() }

        #expect(daemon.waitForExit(timeout: 15) == 1)
        #expect(daemon.log().contains("unknown user mailcloak-no-such-user in server.user"))
    }

    @Test func rootWithoutUserFailsStart() throws {
        let daemon = try LoopDaemon.launch(name: "root-refused", prefix: [], serverKeys: [], allowRoot: false)
        defer { daemon.kill() }

        #expect(daemon.waitForExit(timeout: 15) == 1)
        #expect(daemon.log().contains(
            "start failed: refusing to serve as root; set server.user, or server.allow_root: true"))
    }

    @Test func allowRootServesWithWarning() throws {
        let daemon = try LoopDaemon.start(name: "root", prefix: [])
        defer { daemon.kill() }

        #expect(daemon.waitForLog("level=warning", "server.allow_root is set"))
        #expect(daemon.stop() == 0)
    }
}

/// `mailcloak serve` with one TCP policy listener, an unreachable database and identity provider.
private enum LoopDaemon {
    /// Starts the daemon and waits for its start line.
    static func start(name: String, prefix: [String], serverKeys: [String] = []) throws -> TestDaemon {
        let daemon = try launch(name: name, prefix: prefix, serverKeys: serverKeys)
        try daemon.waitForStartLine()
        return daemon
    }

    /// Starts the daemon, run through `prefix` when given, with `serverKeys` added to its `server`
    /// section, and `allow_root: true` unless `allowRoot` is false (tests run as root in CI).
    static func launch(
        name: String, prefix: [String], serverKeys: [String], allowRoot: Bool = true
    ) throws -> TestDaemon {
        let serverKeys = allowRoot ? serverKeys + ["allow_root: true"] : serverKeys
        let port = try TestEnvironment.freePorts(count: 1)
        let configuration = TestDaemon.unreachableBackendsConfiguration(
            listenerName: "loop", port: port, threads: 2, serverKeys: serverKeys, metricsKeys: ["enabled: false"],
            logKeys: ["level: info"])
        return try TestDaemon.launch(
            name: "loop-\(name)", port: port, metricsPort: nil, configuration: configuration, prefix: prefix)
    }
}
