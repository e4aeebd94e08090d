// The services of the mutual-TLS end-to-end suite: a fresh database,
// keycloak_dev.py, mailcloak with one mutual-TLS listener, stunnel clients
// made from deploy/postfix-node/stunnel-mailcloak.conf (one per node
// identity), and a private Postfix that reaches mailcloak only through
// stunnel. Certificates come from certs-example/make-certs.sh at start.
// Everything stops by process id after the suite, also when a start fails.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The running services of one TLS suite run.
struct TLSStack: SuiteStack {
    @TaskLocal static var current: TLSStack?

    let settings: StackSettings
    let directory: URL
    /// Output of make-certs.sh.
    let certificates: URL
    /// The files mailcloak serves, copied from `certificates` so a test can replace them.
    let live: URL
    let mailcloakPID: pid_t
    let mailcloakLog: URL
    let configFile: URL
    let tlsPort: UInt16
    /// stunnel's plain endpoint for node mx1 (policy and every map) and mx2 (the alias map only).
    let mx1Port: UInt16
    let mx2Port: UInt16
    let postfix: PostfixInstance
    let teardown: Teardown

    static var currentBinding: TaskLocal<TLSStack?> { $current }

    func log() -> String { TestEnvironment.readText(mailcloakLog) }

    /// The number of log lines that contain every one of `parts`.
    func logCount(_ parts: [String]) -> Int {
        log().split(separator: "\n").filter { line in parts.allSatisfy { line.contains($0) } }.count
    }

    /// Waits until `count` log lines contain every one of `parts`, and returns whether they did.
    func waitForLog(_ parts: [String], count: Int = 1, timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if logCount(parts) >= count {
                return true
            }
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        return false
    }

    static func start() throws -> TLSStack {
        let settings = try StackSettings.fromEnvironment()
        let directory = settings.workDirectory.appendingPathComponent("tls-e2e-\(UUID().uuidString.prefix(8).lowercased())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        chmod(directory.path, 0o755)
        let teardown = Teardown()
        do {
            return try start(settings: settings, directory: directory, teardown: teardown)
        } catch {
            let problems = teardown.run()
            guard problems.isEmpty else { throw StackSetupError.teardownFailed(["start failed: \(error)"] + problems) }
            throw error
        }
    }

    private static func start(settings: StackSettings, directory: URL, teardown: Teardown) throws -> TLSStack {
        let certificates = directory.appendingPathComponent("certs")
        try TestEnvironment.runChecked("/bin/sh", [
            settings.sourceRoot.appendingPathComponent("certs-example/make-certs.sh").path, certificates.path,
            "mailcloak.test", "mx1", "mx2",
        ])
        let live = directory.appendingPathComponent("live")
        try FileManager.default.createDirectory(at: live, withIntermediateDirectories: true)
        for name in ["server.crt", "server.key", "ca.crt"] {
            try FileManager.default.copyItem(at: certificates.appendingPathComponent(name), to: live.appendingPathComponent(name))
        }

        let database = try TestDatabase.create(adminURL: settings.adminDatabaseURL)
        teardown.add("drop database \(database.name)") { try database.drop() }
        let ctl = MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url)
        try ctl.runChecked(["migrate"])
        try ctl.runChecked(["domains", "add", "example.com"])
        try ctl.runChecked(["aliases", "add", "sales@example.com", "alice"])

        let keycloak = try KeycloakDevProcess.start(sourceRoot: settings.sourceRoot, directory: directory)
        teardown.add("stop keycloak_dev.py") { try keycloak.stop() }

        let tlsPort = try TestEnvironment.freePorts(count: 1)
        let configFile = directory.appendingPathComponent("mailcloak.yaml")
        let mailcloakLog = directory.appendingPathComponent("mailcloak.log")
        try configuration(port: tlsPort, live: live, certificates: certificates, databaseURL: database.url,
                          keycloakBaseURL: keycloak.baseURL)
            .write(to: configFile, atomically: true, encoding: .utf8)
        let pid = try TestEnvironment.launch(
            settings.mailcloakPath, ["serve", "--config", configFile.path],
            outputPath: directory.appendingPathComponent("mailcloak.out").path, errorPath: mailcloakLog.path)
        teardown.add("stop mailcloak") {
            guard TestEnvironment.terminate(pid) == 0 else {
                throw StackSetupError.stopFailed(service: "mailcloak", detail: "log \(mailcloakLog.path)")
            }
        }
        try waitForMailcloak(pid: pid, log: mailcloakLog)

        let mx1Port = try TestEnvironment.freePorts(count: 1)
        let mx2Port = try TestEnvironment.freePorts(count: 1)
        let stunnelConfig = directory.appendingPathComponent("stunnel.conf")
        try stunnelConfiguration(
            sourceRoot: settings.sourceRoot, directory: directory, certificates: certificates, tlsPort: tlsPort,
            nodes: [("mx1", mx1Port), ("mx2", mx2Port)]
        ).write(to: stunnelConfig, atomically: true, encoding: .utf8)
        let stunnel = try TestEnvironment.launch(
            "/usr/bin/stunnel4", [stunnelConfig.path],
            outputPath: directory.appendingPathComponent("stunnel.out").path,
            errorPath: directory.appendingPathComponent("stunnel.err").path)
        teardown.add("stop stunnel") {
            guard TestEnvironment.terminate(stunnel) != nil else {
                throw StackSetupError.stopFailed(service: "stunnel", detail: "pid \(stunnel) survived SIGKILL")
            }
        }
        try waitForPort(mx1Port, service: "stunnel", pid: stunnel, log: directory.appendingPathComponent("stunnel.log"))
        try waitForPort(mx2Port, service: "stunnel", pid: stunnel, log: directory.appendingPathComponent("stunnel.log"))

        let postfix = try PostfixInstance.start(
            directory: directory.appendingPathComponent("postfix"), smtpPort: try TestEnvironment.freePorts(count: 2),
            mailcloakEndpoint: "127.0.0.1:\(mx1Port)")
        teardown.add("stop Postfix") { try postfix.stop() }

        return TLSStack(
            settings: settings, directory: directory, certificates: certificates, live: live, mailcloakPID: pid,
            mailcloakLog: mailcloakLog, configFile: configFile, tlsPort: tlsPort, mx1Port: mx1Port, mx2Port: mx2Port, postfix: postfix,
            teardown: teardown)
    }

    /// mailcloak with one mutual-TLS listener: mx1 (by its SPIFFE URI) gets
    /// policy and every map, mx2 (by its CN) only the alias map. The TLS files
    /// change only on SIGHUP (reload_interval 0), so the rotation test exercises the signal.
    static func configuration(port: UInt16, live: URL, certificates: URL, databaseURL: String,
                              keycloakBaseURL: String) -> String {
        """
        listeners:
          - name: mtls
            address: "tcp:127.0.0.1:\(port)"
            tls:
              certificate: \(live.path)/server.crt
              key: \(live.path)/server.key
              client_ca: \(live.path)/ca.crt
              crl: [\(certificates.path)/ca.crl]
              handshake_timeout: 2s
              reload_interval: 0
            acl:
              - name: mx1
                identities: ["uri:spiffe://mail.example/node/mx1"]
                services: [policy, "socketmap:*"]
              - name: mx2
                identities: ["cn:mx2"]
                services: ["socketmap:alias"]
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

    /// deploy/postfix-node/stunnel-mailcloak.conf with this run's paths and
    /// ports, in the foreground, one service per node. The client trusts both
    /// demo CAs, as during a CA rotation.
    static func stunnelConfiguration(
        sourceRoot: URL, directory: URL, certificates: URL, tlsPort: UInt16, nodes: [(String, UInt16)]
    ) throws -> String {
        let template = try String(
            contentsOf: sourceRoot.appendingPathComponent("deploy/postfix-node/stunnel-mailcloak.conf"), encoding: .utf8)
        let parts = template.components(separatedBy: "[mailcloak]\n")
        guard parts.count == 2 else {
            throw StackSetupError.unexpectedOutput(command: "read stunnel-mailcloak.conf", output: template)
        }
        var global = parts[0]
            .replacingOccurrences(of: "foreground = no", with: "foreground = yes")
            .replacingOccurrences(of: "pid = /run/stunnel4/mailcloak.pid", with: "pid =")
            .replacingOccurrences(of: "output = /var/log/stunnel4/mailcloak.log", with: "output = \(directory.path)/stunnel.log")
        global = global.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("setuid") && !$0.hasPrefix("setgid") }.joined(separator: "\n")
        var text = global
        for (node, port) in nodes {
            text += "[\(node)]\n" + parts[1]
                .replacingOccurrences(of: "accept = 127.0.0.1:10027", with: "accept = 127.0.0.1:\(port)")
                .replacingOccurrences(of: "connect = mailcloak.example.internal:10443", with: "connect = 127.0.0.1:\(tlsPort)")
                .replacingOccurrences(of: "checkHost = mailcloak.example.internal", with: "checkHost = mailcloak.test")
                .replacingOccurrences(of: "/etc/stunnel/mailcloak/client.", with: "\(certificates.path)/client-\(node).")
                .replacingOccurrences(of: "/etc/stunnel/mailcloak/ca.crt", with: "\(certificates.path)/ca-bundle-overlap.crt")
        }
        return text
    }

    private static func waitForMailcloak(pid: pid_t, log: URL) throws {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if let status = TestEnvironment.exitStatus(of: pid) {
                throw StackSetupError.exited(service: "mailcloak", status: status, log: TestEnvironment.readText(log))
            }
            let text = TestEnvironment.readText(log)
            if text.contains("event=\"snapshot loaded\""), text.contains("event=\"mailcloak started\"") { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw StackSetupError.notReady(service: "mailcloak", seconds: 15, log: TestEnvironment.readText(log))
    }

    private static func waitForPort(_ port: UInt16, service: String, pid: pid_t, log: URL) throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let status = TestEnvironment.exitStatus(of: pid) {
                throw StackSetupError.exited(service: service, status: status, log: TestEnvironment.readText(log))
            }
            if let socket = PlainSocket(port: port) {
                socket.close()
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw StackSetupError.notReady(service: service, seconds: 10, log: TestEnvironment.readText(log))
    }
}

extension Trait where Self == StackTrait<TLSStack> {
    static var tlsStack: Self { Self() }
}

/// A blocking plain TCP connection to 127.0.0.1 with 10-second timeouts.
final class PlainSocket {
    private var descriptor: Int32

    init?(port: UInt16) {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = TestEnvironment.loopbackAddress(port: port)
        let status = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if status != 0 {
            Glibc.close(descriptor)
            return nil
        }
    }

    deinit { close() }

    func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }

    /// Sends `text` and reads until the reply ends with `terminator`; nil on failure or after 4096 bytes.
    func exchange(_ text: String, until terminator: String) -> String? {
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count
        else { return nil }
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while reply.count < 4096 {
            let count = recv(descriptor, &chunk, chunk.count, 0)
            guard count > 0 else { return nil }
            reply += chunk[0..<count]
            let text = String(decoding: reply, as: UTF8.self)
            if text.hasSuffix(terminator) { return text }
        }
        return nil
    }
}

/// A socketmap request as a netstring.
func netstring(_ payload: String) -> String { "\(payload.utf8.count):\(payload)," }
