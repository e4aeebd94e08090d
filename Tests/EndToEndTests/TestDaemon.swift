// A `mailcloak serve` process for tests of the daemon itself: the test writes
// its configuration, the daemon runs from the build folder with its stderr in
// a log file, and the test stops it by process id. Configurations from
// `unreachableBackendsConfiguration` point the database and the identity
// provider at port 1 on loopback, which refuses connections at once, so the
// daemon replies to every policy request with its temporary failure.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A running `mailcloak serve` process and the files it uses.
struct TestDaemon {
    let pid: pid_t
    /// The policy listener's port on 127.0.0.1.
    let port: UInt16
    /// The metrics endpoint's port on 127.0.0.1, or nil when the configuration disables it.
    let metricsPort: UInt16?
    let configFile: URL
    /// Standard error of the daemon: its log, one event per line.
    let logFile: URL

    /// The mailcloak binary beside the test bundle.
    static var binary: String {
        let runner = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: runner).deletingLastPathComponent().appendingPathComponent("mailcloak").path
    }

    /// Returns a configuration with one TCP policy listener named `listenerName` on 127.0.0.1:`port`,
    /// `threads` reactor and worker threads, and an unreachable database and identity provider.
    /// Each entry of `serverKeys`, `metricsKeys` and `logKeys` is one `key: value` line of that section.
    static func unreachableBackendsConfiguration(
        listenerName: String, port: UInt16, threads: Int, serverKeys: [String], metricsKeys: [String],
        logKeys: [String]
    ) -> String {
        """
        listeners:
          - name: \(listenerName)
            address: "tcp:127.0.0.1:\(port)"
            services: [policy]
        server:
          reactor_threads: \(threads)
          worker_threads: \(threads)
        \(indented(serverKeys))database:
          url: "postgresql://mailcloak@127.0.0.1:1/mailcloak"
          connect_timeout: 1s
        identity:
          provider: keycloak
          keycloak:
            base_url: "http://127.0.0.1:1"
            realm: test
            client_id: mailcloak
            client_secret: unused
        metrics:
        \(indented(metricsKeys))log:
        \(indented(logKeys))

        """
    }

    /// Returns the `identity` section for keycloak_dev.py at `keycloakBaseURL`, with its development
    /// realm and demo client. A caller may add keys of the section, such as `redis`, right after it.
    static func keycloakIdentitySection(keycloakBaseURL: String) -> String {
        """
        identity:
          provider: keycloak
          keycloak:
            base_url: "\(keycloakBaseURL)"
            realm: \(KeycloakDevProcess.realm)
            client_id: mailcloak
            client_secret: demo-secret
            request_timeout: 5s
            connect_timeout: 2s

        """
    }

    /// Writes `configuration` to a new scratch directory named after `name` and starts the daemon
    /// without waiting for it. With `prefix`, its first element runs with the rest of `prefix`,
    /// the binary and the daemon's arguments (for example util-linux prlimit).
    static func launch(
        name: String, port: UInt16, metricsPort: UInt16?, configuration: String, prefix: [String] = []
    ) throws -> TestDaemon {
        let directory = try TestEnvironment.makeScratchDirectory(prefix: "mailcloak-\(name)")
        let configFile = directory.appendingPathComponent("mailcloak.yaml")
        let logFile = directory.appendingPathComponent("mailcloak.log")
        try configuration.write(to: configFile, atomically: true, encoding: .utf8)

        let serveArguments = ["serve", "--config", configFile.path]
        let executable = prefix.first ?? binary
        let arguments = prefix.isEmpty ? serveArguments : Array(prefix.dropFirst()) + [binary] + serveArguments
        let pid = try TestEnvironment.launch(
            executable, arguments,
            outputPath: directory.appendingPathComponent("mailcloak.out").path, errorPath: logFile.path)
        return TestDaemon(pid: pid, port: port, metricsPort: metricsPort, configFile: configFile, logFile: logFile)
    }

    /// Waits up to `timeout` seconds for the start line on stderr. On a timeout it stops the daemon
    /// and throws `StackSetupError.notReady` with the log.
    func waitForStartLine(timeout: Double = 20) throws {
        guard waitForLog("event=\"mailcloak started\"", timeout: timeout) else {
            kill()
            throw StackSetupError.notReady(service: "mailcloak", seconds: timeout, log: log())
        }
    }

    /// Waits up to `timeout` seconds until the policy listener accepts a connection, for a daemon
    /// that logs elsewhere than stderr. On a timeout it stops the daemon and throws
    /// `StackSetupError.notReady` with the log.
    func waitForListener(timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if PlainSocket(port: port) != nil { return }
            usleep(50_000)
        }
        kill()
        throw StackSetupError.notReady(service: "mailcloak", seconds: timeout, log: log())
    }

    /// Everything the daemon logged so far.
    func log() -> String { TestEnvironment.readText(logFile) }

    /// Waits until one log line contains every fragment. Returns false when `timeout` seconds pass without it.
    func waitForLog(_ fragments: String..., timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            let found = log().split(separator: "\n").contains { line in fragments.allSatisfy { line.contains($0) } }
            if found { return true }
            usleep(20_000)
        } while Date() < deadline
        return false
    }

    /// Scrapes /metrics until a line equals `line`. Returns false when 10 s pass without it.
    /// The daemon must have been launched with a `metricsPort`.
    func waitForMetric(_ line: String) throws -> Bool {
        guard let metricsPort else {
            throw StackSetupError.unexpectedOutput(command: "GET /metrics", output: "metrics port missing: launch the daemon with a metricsPort")
        }
        let deadline = Date().addingTimeInterval(10)
        repeat {
            let reply = try LoopbackExchange.send(
                Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8), port: metricsPort) { _ in false }
            let text = String(decoding: reply, as: UTF8.self)
            if text.split(separator: "\n").contains(where: { $0 == line }) { return true }
            usleep(50_000)
        } while Date() < deadline
        return false
    }

    /// Returns the `Uid:` or `Gid:` line of the daemon's /proc status: real, effective, saved and
    /// filesystem ids, separated by single spaces.
    func ids(_ field: String) -> String {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
        return line.dropFirst(field.count + 1).split(whereSeparator: { $0 == "\t" || $0 == " " }).joined(separator: " ")
    }

    /// Sends `signalNumber` (for example SIGHUP or SIGTERM) to the daemon.
    func signal(_ signalNumber: Int32) {
        Glibc.kill(pid, signalNumber)
    }

    /// Returns the exit status once the daemon has exited, or nil after `timeout` seconds.
    func waitForExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if let status = TestEnvironment.exitStatus(of: pid) { return status }
            usleep(20_000)
        } while Date() < deadline
        return nil
    }

    /// Sends SIGTERM, so that every line is written, and returns the exit status, or nil when the
    /// daemon had to be killed.
    func stop() -> Int32? { TestEnvironment.terminate(pid) }

    /// Stops the daemon if it still runs, as cleanup after a failed check.
    func kill() { TestEnvironment.terminate(pid, timeout: 5) }

    /// Returns `keys` as lines indented under a section key, each ending with a newline.
    private static func indented(_ keys: [String]) -> String {
        keys.map { "  " + $0 + "\n" }.joined()
    }
}
