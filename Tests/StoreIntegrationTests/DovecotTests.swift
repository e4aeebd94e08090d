// Dovecot verifies what mailcloakctl stores: `doveadm pw -t` checks an
// argon2id hash, and a throwaway Dovecot instance using the passdb query
// in deploy/dovecot authenticates apps from the test database.
import Foundation
import Testing

@Suite struct DovecotTests {
    static let doveadm = "/usr/bin/doveadm"

    /// Adds an app through mailcloakctl and returns the stored hash.
    static func addApp(_ database: TestDatabase, _ id: String, secret: String) throws -> String {
        let result = try ctl(database, ["apps", "add", id, "--secret-stdin"], input: secret + "\n")
        guard result.status == 0 else { throw TestSetupError(description: "apps add failed: \(result)") }
        let rows = try database.rows("SELECT secret_hash FROM apps WHERE id = '\(id.lowercased())'")
        guard let hash = rows.first?.first ?? nil else { throw TestSetupError(description: "no hash stored") }
        return hash
    }

    @Test func doveadmVerifiesCtlHash() throws {
        let database = try TestDatabase()
        let hash = try Self.addApp(database, "mailer", secret: "correct horse battery")

        let right = try runProcess(Self.doveadm, ["pw", "-t", "{ARGON2ID}" + hash, "-p", "correct horse battery"])
        let wrong = try runProcess(Self.doveadm, ["pw", "-t", "{ARGON2ID}" + hash, "-p", "wrong horse battery"])

        #expect(right.status == 0)
        #expect(right.stdout == "{ARGON2ID}\(hash) (verified)\n")
        #expect(wrong.status != 0)
    }

    @Test func dovecotPassdbAuthenticatesApps() throws {
        let database = try TestDatabase()
        _ = try Self.addApp(database, "Mailer", secret: "correct horse battery")
        _ = try Self.addApp(database, "paused", secret: "paused app secret")
        _ = try ctl(database, ["apps", "disable", "paused"])
        try importLegacyApp(database, id: "legacy", secret: "legacy app secret")
        let dovecot = try DovecotInstance(databaseURL: database.url)
        defer { dovecot.stop() }

        let mixedCase = try dovecot.authTest("MAILER", "correct horse battery")
        let wrongSecret = try dovecot.authTest("mailer", "wrong horse battery")
        let disabled = try dovecot.authTest("paused", "paused app secret")
        let legacy = try dovecot.authTest("legacy", "legacy app secret")

        #expect(mixedCase.status == 0, "\(mixedCase)")
        #expect(mixedCase.stdout.hasPrefix("passdb: MAILER auth succeeded\n"))
        #expect(wrongSecret.status == 77, "\(wrongSecret)")
        #expect(disabled.status == 77, "\(disabled)")
        #expect(legacy.status == 0, "\(legacy)")
    }

    /// Imports an app whose first-generation hash carries its own {ARGON2ID} prefix.
    private func importLegacyApp(_ database: TestDatabase, id: String, secret: String) throws {
        let generated = try runProcess(Self.doveadm, ["pw", "-s", "ARGON2ID", "-p", secret])
        let hash = generated.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let folder = try TemporaryFolder()
        let path = folder.path + "/state.db"
        let sql = """
            CREATE TABLE apps (app_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL,
                enabled INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL);
            INSERT INTO apps VALUES ('\(id)', '\(hash)', 1, 1690000000);
            """
        let created = try runProcess("/usr/bin/sqlite3", [path], input: sql)
        let imported = try ctl(database, ["import-sqlite", path])
        guard created.status == 0, imported.status == 0, hash.hasPrefix("{ARGON2ID}$argon2id$") else {
            throw TestSetupError(description: "legacy import failed: \(generated) \(created) \(imported)")
        }
    }
}

/// A Dovecot master process with only the auth service, configured with
/// deploy/dovecot/dovecot-sql.conf.ext pointed at the test database.
final class DovecotInstance {
    let folder: String
    let configPath: String
    private var masterProcessID: pid_t = 0

    init(databaseURL: String) throws {
        // A short path under /tmp: Dovecot's UNIX sockets live in base_dir.
        folder = "/tmp/mc-dovecot-" + String(UUID().uuidString.prefix(8))
        configPath = folder + "/dovecot.conf"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try writeConfiguration(databaseURL: databaseURL)

        // In the foreground (-F) the master stays this test's child, stopped by its process id.
        masterProcessID = try spawnWithDefaultSignals("/usr/sbin/dovecot", ["-F", "-c", configPath])
        let ready = eventually { FileManager.default.fileExists(atPath: self.folder + "/run/auth-client") }
        guard ready else {
            stop()
            throw TestSetupError(description: "dovecot auth-client socket did not appear; see \(folder)/dovecot.log")
        }
    }

    private func writeConfiguration(databaseURL: String) throws {
        let deployFile = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/dovecot/dovecot-sql.conf.ext")
        let shipped = try String(contentsOf: deployFile, encoding: .utf8)
        let sqlConfig = shipped.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("connect =") ? "connect = \(databaseURL)" : String($0) }
            .joined(separator: "\n")
        try sqlConfig.write(toFile: folder + "/dovecot-sql.conf.ext", atomically: true, encoding: .utf8)

        let config = """
            instance_name = mailcloak-test-\(folder.suffix(8))
            base_dir = \(folder)/run
            state_dir = \(folder)/state
            log_path = \(folder)/dovecot.log
            protocols =
            listen = 127.0.0.1
            ssl = no
            auth_mechanisms = plain login
            passdb {
              driver = sql
              args = \(folder)/dovecot-sql.conf.ext
            }
            userdb {
              driver = static
              args = uid=nobody gid=nogroup home=/nonexistent
            }

            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Runs `doveadm auth test` against this instance.
    func authTest(_ user: String, _ password: String) throws -> ProcessResult {
        try runProcess(DovecotTests.doveadm, ["-c", configPath, "auth", "test", user, password])
    }

    /// Stops the master process by its process id and removes the folder.
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
        try? FileManager.default.removeItem(atPath: folder)
    }
}

/// Starts `executable` with stdio on /dev/null and an empty signal mask.
///
/// Foundation's Process passes on the test runner's signal mask, in which
/// SIGTERM is blocked, so a daemon started that way ignores SIGTERM.
func spawnWithDefaultSignals(_ executable: String, _ arguments: [String]) throws -> pid_t {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var emptyMask = sigset_t()
    sigemptyset(&emptyMask)
    var defaultSignals = sigset_t()
    sigemptyset(&defaultSignals)
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaultSignals, signal) }
    posix_spawnattr_setsigmask(&attributes, &emptyMask)
    posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for descriptor: Int32 in [0, 1, 2] {
        posix_spawn_file_actions_addopen(&actions, descriptor, "/dev/null", descriptor == 0 ? O_RDONLY : O_WRONLY, 0)
    }

    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var processID: pid_t = 0
    let result = posix_spawn(&processID, executable, &actions, &attributes, argv, environ)
    guard result == 0 else { throw TestSetupError(description: "posix_spawn \(executable) failed: errno \(result)") }
    return processID
}
