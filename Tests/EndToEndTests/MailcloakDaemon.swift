// `mailcloak serve` from the build folder, with a configuration written for
// the test database and keycloak_dev.py. It has one TCP listener on a free
// loopback port that offers both services. It logs at debug level, so every
// policy decision and socketmap reply shows up in the log file.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A running mailcloak daemon.
struct MailcloakDaemon: Sendable {
    /// Maximum wait for the listener and the first snapshot, in seconds.
    static let startTimeout = 15.0

    let pid: pid_t
    let port: UInt16
    let configFile: URL
    /// Standard error of the daemon: its log, one event per line.
    let logFile: URL

    /// The policy and socketmap endpoint for Postfix, `127.0.0.1:PORT`.
    var endpoint: String { "127.0.0.1:\(port)" }

    /// Writes the configuration, starts the daemon, and waits until it has
    /// loaded its first snapshot and accepts connections.
    static func start(
        settings: StackSettings, directory: URL, databaseURL: String, keycloakBaseURL: String
    ) throws -> MailcloakDaemon {
        let port = try TestEnvironment.freePorts(count: 1)
        let configFile = directory.appendingPathComponent("mailcloak.yaml")
        let logFile = directory.appendingPathComponent("mailcloak.log")
        try configuration(port: port, databaseURL: databaseURL, keycloakBaseURL: keycloakBaseURL)
            .write(to: configFile, atomically: true, encoding: .utf8)

        let pid = try TestEnvironment.launch(
            settings.mailcloakPath, ["serve", "--config", configFile.path],
            outputPath: directory.appendingPathComponent("mailcloak.out").path,
            errorPath: logFile.path
        )
        let daemon = MailcloakDaemon(pid: pid, port: port, configFile: configFile, logFile: logFile)
        try daemon.waitUntilReady()
        return daemon
    }

    /// Returns the YAML configuration (docs/configuration.md describes each key).
    static func configuration(port: UInt16, databaseURL: String, keycloakBaseURL: String) -> String {
        """
        listeners:
          - name: e2e
            address: "tcp:127.0.0.1:\(port)"
            services: [policy, socketmap]
        server:
          reactor_threads: 2
          worker_threads: 4
          allow_root: true
        database:
          url: "\(databaseURL)"
        \(TestDaemon.keycloakIdentitySection(keycloakBaseURL: keycloakBaseURL))log:
          level: debug
          format: keyvalue

        """
    }

    /// Everything the daemon logged so far.
    func log() -> String {
        TestEnvironment.readText(logFile)
    }

    /// Waits until `count` complete log lines satisfy `predicate` and returns them.
    ///
    /// The daemon logs a decision after it sends the reply, so a line can
    /// appear shortly after the client has read the reply.
    func waitForLogLines(count: Int, timeout: Double = 5, where predicate: (String) -> Bool) -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var matching: [String] = []
        repeat {
            // The last element is an unfinished line (or empty), so it is left out.
            let lines = log().split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            matching = lines.map(String.init).filter(predicate)
            if matching.count >= count {
                return matching
            }
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        return matching
    }

    /// Sends SIGTERM and expects a clean exit (status 0).
    func stop() throws {
        let status = TestEnvironment.terminate(pid)
        guard status == 0 else {
            let detail = status.map { "exit status \($0)" } ?? "pid \(pid) survived SIGKILL"
            throw StackSetupError.stopFailed(service: "mailcloak", detail: "\(detail), log \(logFile.path)")
        }
    }

    private func waitUntilReady() throws {
        let deadline = Date().addingTimeInterval(Self.startTimeout)
        while Date() < deadline {
            if let status = TestEnvironment.exitStatus(of: pid) {
                throw StackSetupError.exited(service: "mailcloak", status: status, log: log())
            }
            if log().contains("event=\"snapshot loaded\""), Self.acceptsConnections(port: port) {
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        TestEnvironment.terminate(pid)
        throw StackSetupError.notReady(service: "mailcloak", seconds: Self.startTimeout, log: log())
    }

    private static func acceptsConnections(port: UInt16) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = TestEnvironment.loopbackAddress(port: port)
        let status = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return status == 0
    }
}
