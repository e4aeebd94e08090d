// `mailcloakctl checkpassword --cache-dir`: a login while PostgreSQL is reachable
// caches the app's hash, and while PostgreSQL is unreachable the cached hash
// lets that app in, within --max-stale. Everything else during an outage is
// a temporary failure (exit 111), never a rejection.
import Foundation
import Testing

@Suite struct CheckpasswordCacheTests {
    static let secret = CheckpasswordCommandTests.secret
    /// Nothing listens on port 1 of the loopback address, so connections are refused at once.
    static let unreachable = "postgresql://mailcloak@127.0.0.1:1/mailcloak"

    /// Creates a cache folder of this user with mode 0700 (or `mode`), removed with the returned object.
    static func cacheFolder(mode: mode_t = 0o700) throws -> TemporaryFolder {
        let folder = try TemporaryFolder()
        guard chmod(folder.path, mode) == 0 else { throw TestSetupError(description: "chmod \(folder.path) failed") }
        return folder
    }

    static func login(
        _ databaseURL: String, _ user: String, _ secret: String, cache: String, options: [String] = [],
        reply: ReplyProgram
    ) throws -> ProcessResult {
        try runCheckpassword(
            databaseURL, input: Array("\(user)\0\(secret)\0".utf8),
            replyArguments: ["--cache-dir", cache] + options + ["--", reply.path])
    }

    @Test func loginFillsCacheForOutage() throws {
        let database = try CheckpasswordCommandTests.databaseWithApps()
        let cache = try Self.cacheFolder()
        let reply = try ReplyProgram()

        let online = try Self.login(database.url, "MAILER", Self.secret, cache: cache.path, reply: reply)
        let entry = try FileManager.default.attributesOfItem(atPath: cache.path + "/app-mailer")
        let duringOutage = try Self.login(Self.unreachable, "mailer", Self.secret, cache: cache.path, reply: reply)

        #expect(online == ProcessResult(status: 0, stdout: "", stderr: ""))
        #expect(entry[.posixPermissions] as? Int == 0o600)
        #expect(duringOutage.status == 0)
        #expect(duringOutage.stderr.hasPrefix("mailcloakctl checkpassword: app lookup failed: cannot connect to PostgreSQL"))
        #expect(duringOutage.stderr.contains("; app mailer checked against its hash cached "))
        #expect(!duringOutage.stderr.contains(Self.secret))
        #expect(try reply.record() == "USER=mailer\nHOME=unset\nargs=\n")
    }

    @Test func outageWithoutMatchIsTemporary() throws {
        let database = try CheckpasswordCommandTests.databaseWithApps()
        let cache = try Self.cacheFolder()
        let reply = try ReplyProgram()
        _ = try Self.login(database.url, "mailer", Self.secret, cache: cache.path, reply: ReplyProgram())

        let wrongSecret = try Self.login(Self.unreachable, "mailer", "wrong horse battery", cache: cache.path, reply: reply)
        let uncached = try Self.login(Self.unreachable, "nobody", Self.secret, cache: cache.path, reply: reply)
        let invalidID = try Self.login(Self.unreachable, "no body", Self.secret, cache: cache.path, reply: reply)

        #expect(wrongSecret.status == 111)
        #expect(wrongSecret.stderr.contains("; the secret does not match the hash of app mailer cached "))
        #expect(uncached.status == 111)
        #expect(uncached.stderr.hasSuffix("; no cached hash for app nobody\n"))
        #expect(invalidID.status == 111)
        #expect(invalidID.stderr.hasSuffix("; no cached hash for an invalid app id\n"))
        #expect(try reply.record() == nil)
    }

    @Test func staleEntryIsNotUsed() throws {
        let database = try TestDatabase()
        let hash = try DovecotTests.addApp(database, "mailer", secret: Self.secret)
        let cache = try Self.cacheFolder()
        let written = Int(Date().timeIntervalSince1970) - 100
        let path = cache.path + "/app-mailer"
        try "mailcloak-checkpassword-cache 1\n\(written)\nmailer\n\(hash)\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(chmod(path, 0o600) == 0)
        let reply = try ReplyProgram()

        let stale = try Self.login(
            Self.unreachable, "mailer", Self.secret, cache: cache.path, options: ["--max-stale", "60s"], reply: reply)
        let fresh = try Self.login(
            Self.unreachable, "mailer", Self.secret, cache: cache.path, options: ["--max-stale", "1h"], reply: reply)

        #expect(stale.status == 111)
        #expect(stale.stderr.contains("s old, more than --max-stale 60 s"))
        #expect(fresh.status == 0)
        #expect(try reply.record() == "USER=mailer\nHOME=unset\nargs=\n")
    }

    @Test func disabledAppLosesEntry() throws {
        let database = try CheckpasswordCommandTests.databaseWithApps()
        let cache = try Self.cacheFolder()
        _ = try Self.login(database.url, "mailer", Self.secret, cache: cache.path, reply: ReplyProgram())
        let cachedBefore = FileManager.default.fileExists(atPath: cache.path + "/app-mailer")
        let disabled = try ctl(database, ["apps", "disable", "mailer"])
        try #require(disabled.status == 0, "\(disabled)")

        let rejected = try Self.login(database.url, "mailer", Self.secret, cache: cache.path, reply: ReplyProgram())

        #expect(cachedBefore)
        #expect(rejected == ProcessResult(status: 1, stdout: "", stderr: ""))
        #expect(!FileManager.default.fileExists(atPath: cache.path + "/app-mailer"))
    }

    @Test func symlinkedFolderIsNotTrusted() throws {
        let real = try Self.cacheFolder()
        let link = real.path + "-link"
        #expect(symlink(real.path, link) == 0)
        defer { unlink(link) }
        let reply = try ReplyProgram()

        let duringOutage = try Self.login(Self.unreachable, "mailer", Self.secret, cache: link, reply: reply)

        #expect(duringOutage.status == 111)
        #expect(duringOutage.stderr.hasSuffix("; the cache folder \(link) is a symbolic link; give the folder itself\n"))
    }

    /// `apps secret` replaces a leaked secret: once any login of the app reaches PostgreSQL, the
    /// old secret stops working from the cache as well.
    @Test func replacedSecretLeavesCache() throws {
        let database = try CheckpasswordCommandTests.databaseWithApps()
        let cache = try Self.cacheFolder()
        let reply = try ReplyProgram()
        let newSecret = "staple battery horse"
        _ = try Self.login(database.url, "mailer", Self.secret, cache: cache.path, reply: reply)
        let replaced = try ctl(database, ["apps", "secret", "mailer", "--secret-stdin"], input: newSecret + "\n")
        try #require(replaced.status == 0, "\(replaced)")

        let oldOnline = try Self.login(database.url, "mailer", Self.secret, cache: cache.path, reply: reply)
        let cachedAfterOld = FileManager.default.fileExists(atPath: cache.path + "/app-mailer")
        let oldDuringOutage = try Self.login(Self.unreachable, "mailer", Self.secret, cache: cache.path, reply: reply)
        let newOnline = try Self.login(database.url, "mailer", newSecret, cache: cache.path, reply: reply)
        let newDuringOutage = try Self.login(Self.unreachable, "mailer", newSecret, cache: cache.path, reply: reply)
        let oldAfterNew = try Self.login(Self.unreachable, "mailer", Self.secret, cache: cache.path, reply: reply)

        #expect(oldOnline == ProcessResult(status: 1, stdout: "", stderr: ""))
        #expect(!cachedAfterOld)
        #expect(oldDuringOutage.status == 111)
        #expect(oldDuringOutage.stderr.hasSuffix("; no cached hash for app mailer\n"))
        #expect(newOnline == ProcessResult(status: 0, stdout: "", stderr: ""))
        #expect(newDuringOutage.status == 0)
        #expect(oldAfterNew.status == 111)
    }

    @Test(arguments: [0o777, 0o755, 0o750] as [mode_t])
    func openFolderIsNotTrusted(mode: mode_t) throws {
        let database = try CheckpasswordCommandTests.databaseWithApps()
        let cache = try Self.cacheFolder(mode: mode)
        let reply = try ReplyProgram()
        let problem = "the cache folder \(cache.path) is open to other users (mode 0\(String(mode, radix: 8))); make it mode 0700"

        let online = try Self.login(database.url, "mailer", Self.secret, cache: cache.path, reply: reply)
        let duringOutage = try Self.login(Self.unreachable, "mailer", Self.secret, cache: cache.path, reply: reply)

        #expect(online == ProcessResult(status: 0, stdout: "", stderr: "mailcloakctl checkpassword: \(problem)\n"))
        #expect(duringOutage.status == 111)
        #expect(duringOutage.stderr.hasSuffix("; \(problem)\n"))
    }

    @Test(arguments: [
        (["--max-stale", "1h", "--"], "--max-stale needs --cache-dir"),
        (["--cache-dir", "relative", "--"], "invalid --cache-dir \"relative\": expected an absolute path"),
        (["--cache-dir", "/tmp", "--max-stale", "45d", "--"],
         "invalid --max-stale \"45d\": expected a duration from 1s to 720h, such as 30m or 24h"),
    ])
    func invalidCacheOptionExitsTwo(options: [String], message: String) throws {
        let reply = try ReplyProgram()

        let result = try runCheckpassword(
            Self.unreachable, input: Array("mailer\0\(Self.secret)\0".utf8), replyArguments: options + [reply.path])

        #expect(result.status == 2)
        #expect(result.stderr.hasPrefix("mailcloakctl checkpassword: \(message)\n"))
    }
}
