// A private Dovecot whose auth process has the passdbs of
// deploy/dovecot/auth-mailcloak.conf.ext: checkpassword for apps, through
// the shipped mailcloak-checkpassword wrapper and mailcloakctl, beside
// oauth2 for users. `doveadm auth test` logs apps in against the test
// database. The oauth2 passdb only has to load: its introspection URL
// points at a loopback port that refuses connections.
import Foundation
import Testing

@Suite struct CheckpasswordDovecotTests {
    static let secret = "correct horse battery"

    @Test func dovecotChecksAppsThroughCheckpassword() throws {
        let database = try TestDatabase()
        _ = try DovecotTests.addApp(database, "mailer", secret: Self.secret)
        _ = try DovecotTests.addApp(database, "paused", secret: "paused app secret")
        let disabled = try ctl(database, ["apps", "disable", "paused"])
        try #require(disabled.status == 0, "\(disabled)")
        let dovecot = try CheckpasswordDovecot(databaseURL: database.url)
        defer { dovecot.stop() }

        let right = try dovecot.authTest("MAILER", Self.secret)
        let wrongSecret = try dovecot.authTest("mailer", "wrong horse battery")
        let unknown = try dovecot.authTest("nobody", Self.secret)
        let disabledApp = try dovecot.authTest("paused", "paused app secret")

        #expect(right.status == 0, "\(right)")
        // Dovecot 2.3's checkpassword-reply ends its field list with a tab, hence the empty field.
        // The userdb_uid and userdb_gid it sends belong to the userdb and are not listed here.
        #expect(right.stdout == "passdb: MAILER auth succeeded\nextra fields:\n  user=mailer\n  \n  original_user=MAILER\n")
        #expect(wrongSecret.status == 77, "\(wrongSecret)")
        #expect(wrongSecret.stdout == "passdb: mailer auth failed\nextra fields:\n  user=mailer\n", "\(wrongSecret)")
        #expect(unknown.status == 77, "\(unknown)")
        #expect(disabledApp.status == 77, "\(disabledApp)")
        #expect(!(try dovecot.log()).contains("Panic"))
        // The login ran as the dovecot user, which wrote the app's outage cache entry.
        let entry = try FileManager.default.attributesOfItem(atPath: dovecot.folder + "/checkpassword-cache/app-mailer")
        #expect(entry[.ownerAccountName] as? String == "dovecot")
        #expect(entry[.posixPermissions] as? Int == 0o600)
    }
}

/// A Dovecot master process with only the auth service, configured with
/// deploy/dovecot/auth-mailcloak.conf.ext, the mailcloak-checkpassword
/// wrapper and dovecot-oauth2.conf.ext, each with its paths pointed into a
/// private folder.
final class CheckpasswordDovecot {
    let folder: String
    let configPath: String
    private var masterProcessID: pid_t = 0
    /// A bound socket that never listens, so connections to its port are refused.
    private var refusingSocket: Int32 = -1

    init(databaseURL: String) throws {
        // A short path under /tmp: Dovecot's UNIX sockets live in base_dir. Other users
        // may enter it, because the auth process runs the wrapper as the dovecot user.
        folder = "/tmp/mc-checkpw-" + String(UUID().uuidString.prefix(8))
        configPath = folder + "/dovecot.conf"
        try FileManager.default.createDirectory(
            atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        refusingSocket = try Self.bindWithoutListening()
        try writeConfiguration(databaseURL: databaseURL, refusedPort: try Self.port(of: refusingSocket))

        // In the foreground (-F) the master stays this test's child, stopped by its process id.
        masterProcessID = try spawnWithDefaultSignals("/usr/sbin/dovecot", ["-F", "-c", configPath])
        let ready = eventually { FileManager.default.fileExists(atPath: self.folder + "/run/auth-client") }
        guard ready else {
            stop()
            throw TestSetupError(description: "dovecot auth-client socket did not appear; see \(folder)/dovecot.log")
        }
    }

    private static func deployFile(_ name: String) throws -> String {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/dovecot/" + name)
        return try String(contentsOf: url, encoding: .utf8)
    }

    private func writeConfiguration(databaseURL: String, refusedPort: UInt16) throws {
        let wrapperPath = folder + "/mailcloak-checkpassword"
        let mailcloakConfigPath = folder + "/mailcloak.yaml"
        let oauth2Path = folder + "/dovecot-oauth2.conf.ext"

        let cachePath = folder + "/checkpassword-cache"
        let wrapper = try Self.deployFile("mailcloak-checkpassword")
            .replacingOccurrences(of: "/usr/local/bin/mailcloakctl", with: try mailcloakctlPath())
            .replacingOccurrences(of: "/etc/mailcloak/mailcloak.yaml", with: mailcloakConfigPath)
            .replacingOccurrences(of: "/var/cache/mailcloak-checkpassword", with: cachePath)
        try write(wrapper, to: wrapperPath, permissions: 0o755)
        // The outage cache folder of the README's install step: the dovecot user's, mode 0700.
        guard let dovecotUser = getpwnam("dovecot") else { throw TestSetupError(description: "no dovecot user") }
        try FileManager.default.createDirectory(
            atPath: cachePath, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        guard chown(cachePath, dovecotUser.pointee.pw_uid, dovecotUser.pointee.pw_gid) == 0 else {
            throw TestSetupError(description: "chown \(cachePath) failed: errno \(errno)")
        }
        try write("""
            listeners:
              - name: local
                address: "tcp:127.0.0.1:10027"
            database:
              url: "\(databaseURL.replacingOccurrences(of: "'", with: ""))"

            """, to: mailcloakConfigPath, permissions: 0o644)

        let introspection = "http://dovecot:secret@127.0.0.1:\(refusedPort)/realms/mail/protocol/openid-connect/token/introspect"
        let oauth2 = try Self.deployFile("dovecot-oauth2.conf.ext")
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("introspection_url =") ? "introspection_url = \(introspection)" : String($0) }
            .joined(separator: "\n")
        try write(oauth2, to: oauth2Path, permissions: 0o644)

        let auth = try Self.deployFile("auth-mailcloak.conf.ext")
            .replacingOccurrences(of: "/usr/local/bin/mailcloak-checkpassword", with: wrapperPath)
            .replacingOccurrences(of: "/etc/dovecot/dovecot-oauth2.conf.ext", with: oauth2Path)
        try write(auth, to: folder + "/auth-mailcloak.conf.ext", permissions: 0o644)

        // default_vsz_limit = 0: the auth process's address-space limit (256 MB by default)
        // also binds the checkpassword child, and a thread-sanitized mailcloakctl maps far
        // more address space than that, so it could not start. A plain build fits the default.
        try write("""
            instance_name = mailcloak-checkpw-\(folder.suffix(8))
            base_dir = \(folder)/run
            state_dir = \(folder)/state
            log_path = \(folder)/dovecot.log
            protocols =
            listen = 127.0.0.1
            ssl = no
            auth_failure_delay = 0
            default_vsz_limit = 0
            !include \(folder)/auth-mailcloak.conf.ext
            userdb {
              driver = static
              args = uid=nobody gid=nogroup home=/nonexistent
            }

            """, to: configPath, permissions: 0o644)
    }

    private func write(_ text: String, to path: String, permissions: Int) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: permissions], ofItemAtPath: path)
    }

    /// Returns a TCP socket bound to 127.0.0.1 on a port the kernel picks, not listening.
    private static func bindWithoutListening() throws -> Int32 {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestSetupError(description: "socket failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            close(descriptor)
            throw TestSetupError(description: "bind failed: errno \(errno)")
        }
        return descriptor
    }

    private static func port(of descriptor: Int32) throws -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard result == 0 else { throw TestSetupError(description: "getsockname failed: errno \(errno)") }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Runs `doveadm auth test` against this instance. A temporary failure carries Dovecot's
    /// log in its stderr, so that its cause shows in the test's output.
    func authTest(_ user: String, _ password: String) throws -> ProcessResult {
        var result = try runProcess(DovecotTests.doveadm, ["-c", configPath, "auth", "test", user, password])
        if result.stdout.contains("code=temp_fail") {
            result.stderr += "\ndovecot.log:\n" + ((try? log()) ?? "(unreadable)")
        }
        return result
    }

    /// Returns Dovecot's log so far.
    func log() throws -> String {
        try String(contentsOfFile: folder + "/dovecot.log", encoding: .utf8)
    }

    /// Stops the master process by its process id, closes the refusing socket and removes the folder.
    func stop() {
        if masterProcessID > 0 {
            kill(masterProcessID, SIGTERM)
            var status: Int32 = 0
            let exited = eventually { waitpid(masterProcessID, &status, WNOHANG) == masterProcessID }
            if !exited {
                kill(masterProcessID, SIGKILL)
                waitpid(masterProcessID, &status, 0)
            }
            masterProcessID = 0
        }
        if refusingSocket >= 0 {
            close(refusingSocket)
            refusingSocket = -1
        }
        try? FileManager.default.removeItem(atPath: folder)
    }
}
