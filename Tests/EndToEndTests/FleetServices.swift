// The processes of the fleet suite that scenarios stop and start again: the
// three mailcloak daemons, HAProxy in front of them, the suite's own
// PostgreSQL cluster and its redis-server. Each is started through
// TestEnvironment's posix_spawn helpers or scripts/testenv, and stopped by
// process id. Readiness comes from the service itself (/readyz, HAProxy's
// statistics, PING), never from a fixed sleep.

import Foundation
import Locking

#if canImport(Glibc)
    import Glibc
#endif

/// Polls `condition` every 50 ms until it returns true or `timeout` seconds pass.
/// Returns whether the condition became true.
func waitUntil(timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    repeat {
        if try condition() {
            return true
        }
        Thread.sleep(forTimeInterval: 0.05)
    } while Date() < deadline
    return try condition()
}

/// Runs curl against a loopback URL and returns the HTTP status and the body; status 0 when no reply came.
func fetchLoopbackURL(_ url: String, timeout: Double = 2) throws -> (status: Int, body: String) {
    let marker = "\nHTTP-STATUS:"
    let result = try TestEnvironment.run(
        "/usr/bin/curl",
        ["--silent", "--max-time", String(timeout), "--write-out", "\(marker)%{http_code}", url],
        timeout: timeout + 5)
    let output = result.standardOutput
    guard let range = output.range(of: marker, options: .backwards) else { return (0, output) }
    return (Int(output[range.upperBound...]) ?? 0, String(output[..<range.lowerBound]))
}

// MARK: - mailcloak

/// One `mailcloak serve` of the fleet, which a scenario may kill, drain and start again.
///
/// Each start writes a new log file (`mailcloak.log`, then `mailcloak.2.log`...),
/// so the log of a killed instance stays readable after the restart.
final class FleetDaemon: Sendable {
    /// Maximum wait for a started daemon to report ready on /readyz, in seconds.
    static let startTimeout = 20.0

    /// `m1`, `m2` or `m3`: the server name in HAProxy and the listener name in logs.
    let name: String
    let tlsPort: UInt16
    let metricsPort: UInt16
    let configFile: URL
    let folder: URL
    private let executable: String
    private let state = Locked<(pid: pid_t?, starts: Int)>((nil, 0))

    init(name: String, tlsPort: UInt16, metricsPort: UInt16, folder: URL, configFile: URL, executable: String) {
        self.name = name
        self.tlsPort = tlsPort
        self.metricsPort = metricsPort
        self.folder = folder
        self.configFile = configFile
        self.executable = executable
    }

    /// The process id while the daemon runs, nil after it exited and was reaped.
    var pid: pid_t? { state.withLock { $0.pid } }

    /// The log of the current (or last) start.
    var logFile: URL {
        let starts = state.withLock { $0.starts }
        return folder.appendingPathComponent(starts <= 1 ? "mailcloak.log" : "mailcloak.\(starts).log")
    }

    func log() -> String { TestEnvironment.readText(logFile) }

    /// Counts the complete log lines of the current start that contain `event="EVENT"`.
    func eventCount(_ event: String) -> Int {
        logLineCount(containing: "event=\"\(event)\"")
    }

    /// Counts the complete log lines of the current start that contain `text`.
    func logLineCount(containing text: String) -> Int {
        log().split(separator: "\n").filter { $0.contains(text) }.count
    }

    /// Starts the daemon without waiting for it.
    func launch() throws {
        let starts = state.withLock { state in
            state.starts += 1
            return state.starts
        }
        let log = folder.appendingPathComponent(starts <= 1 ? "mailcloak.log" : "mailcloak.\(starts).log")
        let pid = try TestEnvironment.launch(
            executable, ["serve", "--config", configFile.path],
            outputPath: folder.appendingPathComponent("mailcloak.\(starts).out").path, errorPath: log.path)
        state.withLock { $0.pid = pid }
    }

    /// Waits until /readyz returns 200.
    /// - Throws: `StackSetupError.exited` when the daemon exits, `.notReady` after `startTimeout`.
    func waitUntilReady() throws {
        let ready = try waitUntil(timeout: Self.startTimeout) {
            if let status = reapIfExited() {
                throw StackSetupError.exited(service: "mailcloak \(name)", status: status, log: log())
            }
            return try readinessStatus() == 200
        }
        guard ready else {
            throw StackSetupError.notReady(service: "mailcloak \(name)", seconds: Self.startTimeout, log: log())
        }
    }

    /// Returns the HTTP status of GET /readyz, or 0 when the endpoint sends no reply.
    func readinessStatus() throws -> Int {
        try fetchLoopbackURL("http://127.0.0.1:\(metricsPort)/readyz").status
    }

    /// Returns the sum of every `mailcloak_requests_total` series on /metrics:
    /// the policy and socketmap requests this instance served since it started.
    func answeredRequests() throws -> Double {
        let reply = try fetchLoopbackURL("http://127.0.0.1:\(metricsPort)/metrics")
        guard reply.status == 200 else {
            throw StackSetupError.unexpectedOutput(command: "GET /metrics of \(name)", output: reply.body)
        }
        return reply.body.split(separator: "\n")
            .filter { $0.hasPrefix("mailcloak_requests_total{") || $0.hasPrefix("mailcloak_requests_total ") }
            .compactMap { line in line.split(separator: " ").last.flatMap { Double($0) } }
            .reduce(0, +)
    }

    /// Sends a signal to the running daemon; does nothing when it is not running.
    func send(_ signal: Int32) {
        if let pid {
            kill(pid, signal)
        }
    }

    /// Waits for the daemon to exit and returns its status (128 + signal when a
    /// signal ended it), or nil when it still runs after `timeout` seconds.
    func waitForExit(timeout: Double) -> Int32? {
        var status: Int32?
        _ = waitUntil(timeout: timeout) {
            status = reapIfExited()
            return status != nil || pid == nil
        }
        return status
    }

    /// Stops the daemon with SIGTERM (SIGKILL after 15 s) and expects exit status 0.
    func stop() throws {
        guard let pid else { return }
        let status = TestEnvironment.terminate(pid, timeout: 15)
        state.withLock { $0.pid = nil }
        guard status == 0 else {
            let detail = status.map { "exit status \($0)" } ?? "pid \(pid) survived SIGKILL"
            throw StackSetupError.stopFailed(service: "mailcloak \(name)", detail: "\(detail), log \(logFile.path)")
        }
    }

    /// Reaps the daemon when it has exited and returns its status; nil while it runs.
    private func reapIfExited() -> Int32? {
        guard let pid else { return nil }
        guard let status = TestEnvironment.exitStatus(of: pid) else { return nil }
        state.withLock { $0.pid = nil }
        return status
    }

    /// Returns the YAML configuration of one fleet daemon (docs/configuration.md describes each key).
    ///
    /// Only HAProxy's source address, 127.0.0.2, must send a PROXY header, so a
    /// client on 127.0.0.1 (openssl s_client) can reach the listener directly.
    /// The TLS files are reread on SIGHUP only (reload_interval 0), so the
    /// rotation scenario controls when each instance takes the new certificate.
    static func configuration(
        name: String, tlsPort: UInt16, metricsPort: UInt16, live: URL, databaseURL: String,
        keycloakBaseURL: String, redisPort: UInt16
    ) -> String {
        """
        listeners:
          - name: \(name)
            address: "tcp:127.0.0.1:\(tlsPort)"
            proxy_protocol_from: [\(FleetHAProxy.sourceAddress)]
            tls:
              certificate: \(live.path)/server.crt
              key: \(live.path)/server.key
              client_ca: \(live.path)/ca.crt
              session_ticket_keys: \(live.path)/ticket-keys
              handshake_timeout: 5s
              reload_interval: 0
            acl:
              - name: mx1
                identities: ["uri:spiffe://mail.example/node/mx1"]
                services: [policy, "socketmap:*"]
        server:
          reactor_threads: 1
          worker_threads: 4
          drain_timeout: 10s
          allow_root: true
        database:
          url: "\(databaseURL)"
          connect_timeout: 2s
          max_reconnect_delay: 1s
        \(TestDaemon.keycloakIdentitySection(keycloakBaseURL: keycloakBaseURL))  redis:
            host: 127.0.0.1
            port: \(redisPort)
            connect_timeout: 200ms
            command_timeout: 200ms
            max_reconnect_delay: 1s
        metrics:
          listen: "127.0.0.1:\(metricsPort)"
        log:
          level: info
          format: keyvalue

        """
    }
}

// MARK: - HAProxy

/// Debian's haproxy in TCP mode in front of the daemons: TLS passes through,
/// each server connection starts with a PROXY v2 header, and a server is
/// checked with `GET /readyz` on its metrics port.
struct FleetHAProxy: Sendable {
    /// Source address of HAProxy's connections to the daemons, and the only
    /// address the daemons accept PROXY headers from.
    static let sourceAddress = "127.0.0.2"
    /// Maximum wait for a server state change in HAProxy's view, in seconds.
    static let stateTimeout = 20.0

    let pid: pid_t
    let frontendPort: UInt16
    let statsPort: UInt16
    let configFile: URL
    let logFile: URL

    /// Writes the configuration, starts haproxy in the foreground and waits until
    /// its statistics page responds.
    static func start(directory: URL, daemons: [FleetDaemon]) throws -> FleetHAProxy {
        let frontendPort = try TestEnvironment.freePorts(count: 1)
        let statsPort = try TestEnvironment.freePorts(count: 1)
        let configFile = directory.appendingPathComponent("haproxy.cfg")
        let logFile = directory.appendingPathComponent("haproxy.log")
        try configuration(frontendPort: frontendPort, statsPort: statsPort, daemons: daemons)
            .write(to: configFile, atomically: true, encoding: .utf8)
        try TestEnvironment.runChecked("/usr/sbin/haproxy", ["-c", "-q", "-f", configFile.path])

        let pid = try TestEnvironment.launch(
            "/usr/sbin/haproxy", ["-db", "-f", configFile.path],
            outputPath: logFile.path, errorPath: directory.appendingPathComponent("haproxy.err").path)
        let haproxy = FleetHAProxy(
            pid: pid, frontendPort: frontendPort, statsPort: statsPort, configFile: configFile, logFile: logFile)
        let answers = try waitUntil(timeout: 10) {
            if let status = TestEnvironment.exitStatus(of: pid) {
                throw StackSetupError.exited(service: "haproxy", status: status, log: haproxy.errors())
            }
            return (try? haproxy.serverStates()) != nil
        }
        guard answers else {
            TestEnvironment.terminate(pid)
            throw StackSetupError.notReady(service: "haproxy", seconds: 10, log: haproxy.errors())
        }
        return haproxy
    }

    /// Returns haproxy.cfg. Timeouts exceed Postfix's idle limits (policy
    /// connections idle up to 300 s), so HAProxy never closes a connection first.
    static func configuration(frontendPort: UInt16, statsPort: UInt16, daemons: [FleetDaemon]) -> String {
        var text = """
            global
                log stdout format raw local0 info
            defaults
                mode tcp
                log global
                option tcplog
                timeout connect 2s
                timeout client 400s
                timeout server 400s
                timeout check 1s
                retries 3
                option redispatch
            frontend mailcloak
                bind 127.0.0.1:\(frontendPort)
                default_backend mailcloak
            backend mailcloak
                balance roundrobin
                option httpchk GET /readyz
                http-check expect status 200
                default-server inter 300ms fall 2 rise 2 send-proxy-v2 source \(sourceAddress)

            """
        for daemon in daemons {
            text += "    server \(daemon.name) 127.0.0.1:\(daemon.tlsPort) check port \(daemon.metricsPort)\n"
        }
        text += """
            listen stats
                mode http
                bind 127.0.0.1:\(statsPort)
                stats enable
                stats uri /stats

            """
        return text
    }

    /// Returns the status HAProxy shows for each server of the backend
    /// (`UP`, `DOWN`, or a transition such as `UP 1/2`), from its CSV statistics.
    func serverStates() throws -> [String: String] {
        let reply = try fetchLoopbackURL("http://127.0.0.1:\(statsPort)/stats;csv")
        guard reply.status == 200 else {
            throw StackSetupError.unexpectedOutput(command: "GET /stats;csv", output: reply.body)
        }
        let lines = reply.body.split(separator: "\n").map(String.init)
        guard let header = lines.first, header.hasPrefix("# ") else {
            throw StackSetupError.unexpectedOutput(command: "GET /stats;csv", output: reply.body)
        }
        let columns = header.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let proxyColumn = columns.firstIndex(of: "pxname"), let serverColumn = columns.firstIndex(of: "svname"),
            let statusColumn = columns.firstIndex(of: "status")
        else {
            throw StackSetupError.unexpectedOutput(command: "GET /stats;csv", output: header)
        }
        var states: [String: String] = [:]
        for line in lines.dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard fields.count > statusColumn, fields[proxyColumn] == "mailcloak" else { continue }
            let server = fields[serverColumn]
            if server != "FRONTEND" && server != "BACKEND" {
                states[server] = fields[statusColumn]
            }
        }
        return states
    }

    /// Waits until HAProxy shows `state` for every server in `servers`, and returns whether it did.
    func waitForState(_ state: String, servers: [String]) throws -> Bool {
        try waitUntil(timeout: Self.stateTimeout) {
            let states = try serverStates()
            return servers.allSatisfy { states[$0] == state }
        }
    }

    func errors() -> String {
        TestEnvironment.readText(configFile.deletingLastPathComponent().appendingPathComponent("haproxy.err"))
            + TestEnvironment.readText(logFile)
    }

    func stop() throws {
        guard TestEnvironment.terminate(pid) != nil else {
            throw StackSetupError.stopFailed(service: "haproxy", detail: "pid \(pid) survived SIGKILL")
        }
    }
}

// MARK: - PostgreSQL

/// The suite's own cluster, run by scripts/testenv/postgres.sh in its own
/// folder and port, so that stopping it leaves the cluster of scripts/test.sh alone.
struct FleetPostgres: Sendable {
    let folder: URL
    let port: UInt16

    private static let script = TestEnvironment.scriptDirectory.appendingPathComponent("postgres.sh").path

    /// Starts the cluster (creating it the first time) and returns its superuser URL.
    @discardableResult
    func start() throws -> String {
        let result = try TestEnvironment.runChecked("/bin/sh", [Self.script, "start", folder.path, String(port)], timeout: 60)
        return result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Stops the cluster with a fast shutdown, which ends the daemons' connections.
    func stop() throws {
        try TestEnvironment.runChecked("/bin/sh", [Self.script, "stop", folder.path], timeout: 60)
    }
}
