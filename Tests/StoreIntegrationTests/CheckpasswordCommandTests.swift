// `mailcloakctl checkpassword` run directly, the way Dovecot runs it: user
// name and secret on descriptor 3 through a pipe, a reply program as the
// arguments. Checks the exit statuses 0, 1, 2 and 111 and what the reply
// program receives.
import Foundation
import Testing

@Suite struct CheckpasswordCommandTests {
    static let secret = "correct horse battery"

    /// Creates a database with the enabled app `mailer` and the disabled app `paused`.
    static func databaseWithApps() throws -> TestDatabase {
        let database = try TestDatabase()
        _ = try DovecotTests.addApp(database, "mailer", secret: secret)
        _ = try DovecotTests.addApp(database, "paused", secret: secret)
        let disabled = try ctl(database, ["apps", "disable", "paused"])
        guard disabled.status == 0 else { throw TestSetupError(description: "apps disable failed: \(disabled)") }
        return database
    }

    @Test func rightSecretRunsReplyProgram() throws {
        let database = try Self.databaseWithApps()
        let reply = try ReplyProgram()

        let result = try runCheckpassword(
            database.url, input: Array("MAILER\0\(Self.secret)\0\0".utf8), replyArguments: [reply.path, "extra"])

        #expect(result == ProcessResult(status: 0, stdout: "", stderr: ""))
        #expect(try reply.record() == "USER=mailer\nHOME=unset\nargs=extra\n")
    }

    @Test func wrongSecretExitsOne() throws {
        let database = try Self.databaseWithApps()
        let reply = try ReplyProgram()

        let result = try runCheckpassword(database.url, input: Array("mailer\0wrong horse battery\0\0".utf8), replyArguments: [reply.path])

        #expect(result == ProcessResult(status: 1, stdout: "", stderr: ""))
        #expect(try reply.record() == nil)
    }

    @Test func unknownAppExitsOne() throws {
        let database = try Self.databaseWithApps()
        let reply = try ReplyProgram()

        let result = try runCheckpassword(database.url, input: Array("nobody\0\(Self.secret)\0\0".utf8), replyArguments: [reply.path])

        #expect(result == ProcessResult(status: 1, stdout: "", stderr: ""))
        #expect(try reply.record() == nil)
    }

    @Test func disabledAppExitsOne() throws {
        let database = try Self.databaseWithApps()
        let reply = try ReplyProgram()

        let result = try runCheckpassword(database.url, input: Array("paused\0\(Self.secret)\0\0".utf8), replyArguments: [reply.path])

        #expect(result == ProcessResult(status: 1, stdout: "", stderr: ""))
        #expect(try reply.record() == nil)
    }

    @Test(arguments: ["ARGON2ID", "ARGON2I"])
    func schemePrefixedHashVerifies(scheme: String) throws {
        let database = try TestDatabase()
        let generated = try runProcess(DovecotTests.doveadm, ["pw", "-s", scheme, "-p", Self.secret])
        let hash = generated.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(hash.hasPrefix("{\(scheme)}$\(scheme.lowercased())$"), "\(generated)")
        try database.sql("INSERT INTO apps (id, secret_hash) VALUES ('legacy', $1)", [hash])
        let reply = try ReplyProgram()

        let right = try runCheckpassword(database.url, input: Array("legacy\0\(Self.secret)\0".utf8), replyArguments: [reply.path])
        let wrong = try runCheckpassword(database.url, input: Array("legacy\0wrong\0".utf8), replyArguments: [reply.path])

        #expect(right == ProcessResult(status: 0, stdout: "", stderr: ""))
        #expect(try reply.record() == "USER=legacy\nHOME=unset\nargs=\n")
        #expect(wrong == ProcessResult(status: 1, stdout: "", stderr: ""))
    }

    @Test func otherSchemeFailsWithMessage() throws {
        let database = try TestDatabase()
        try database.sql("INSERT INTO apps (id, secret_hash) VALUES ('old', '{SSHA512}c2VjcmV0')")
        let reply = try ReplyProgram()

        let result = try runCheckpassword(database.url, input: Array("old\0secret\0".utf8), replyArguments: [reply.path])

        #expect(result == ProcessResult(status: 1, stdout: "", stderr:
            "mailcloakctl checkpassword: the secret hash of app old uses the {SSHA512} scheme, which checkpassword "
            + "cannot verify (only ARGON2ID and ARGON2I); set a new secret with: mailcloakctl apps secret old\n"))
        #expect(try reply.record() == nil)
    }

    @Test func unreachableDatabaseExitsTemporary() throws {
        let reply = try ReplyProgram()
        // Nothing listens on port 1 of the loopback address, so the connection is refused at once.
        let url = "postgresql://mailcloak@127.0.0.1:1/mailcloak"

        let result = try runCheckpassword(url, input: Array("mailer\0\(Self.secret)\0".utf8), replyArguments: [reply.path])

        #expect(result.status == 111)
        #expect(result.stdout == "")
        #expect(result.stderr.hasPrefix("mailcloakctl checkpassword: app lookup failed: cannot connect to PostgreSQL"))
        #expect(!result.stderr.contains(Self.secret))
        #expect(try reply.record() == nil)
    }

    static let missingFields = "input on descriptor 3 lacks the NUL-terminated user name and password"
    /// Malformed inputs on descriptor 3 and the message each gets.
    static let malformedInputs: [String: (input: [UInt8], message: String)] = [
        "no NUL": (Array("mailer".utf8), missingFields),
        "user only": (Array("mailer\0secret".utf8), missingFields),
        "empty": ([], missingFields),
        "oversized": (
            Array("mailer\0".utf8) + [UInt8](repeating: 0x61, count: 5000) + [0],
            "input on descriptor 3 is longer than 4096 bytes"
        ),
    ]

    @Test(arguments: ["no NUL", "user only", "empty", "oversized"])
    func malformedInputExitsTwo(name: String) throws {
        let (input, message) = try #require(Self.malformedInputs[name])
        let database = try Self.databaseWithApps()
        let reply = try ReplyProgram()

        let result = try runCheckpassword(database.url, input: input, replyArguments: [reply.path])

        #expect(result == ProcessResult(status: 2, stdout: "", stderr: "mailcloakctl checkpassword: \(message)\n"))
        #expect(try reply.record() == nil)
    }

    @Test func unendedInputTimesOut() throws {
        let database = try Self.databaseWithApps()
        let reply = try ReplyProgram()

        let result = try runCheckpassword(
            database.url, input: Array("mailer\0\(Self.secret)\0".utf8), replyArguments: [reply.path],
            holdingWriter: true)

        #expect(result == ProcessResult(status: 2, stdout: "", stderr:
            "mailcloakctl checkpassword: reading descriptor 3 timed out after 5 s\n"))
        #expect(try reply.record() == nil)
    }

    @Test func missingReplyProgramExitsTwo() throws {
        let database = try Self.databaseWithApps()

        let result = try runCheckpassword(database.url, input: Array("mailer\0\(Self.secret)\0".utf8), replyArguments: [])

        #expect(result == ProcessResult(status: 2, stdout: "", stderr: """
            mailcloakctl checkpassword: missing REPLY-PROGRAM
            usage: mailcloakctl [--database-url URL | --config FILE] checkpassword [--cache-dir DIR [--max-stale DURATION]] [--] REPLY-PROGRAM...

            """))
    }

    @Test func closedDescriptorExitsTwo() throws {
        let database = try Self.databaseWithApps()
        let reply = try ReplyProgram()

        let result = try runCheckpassword(database.url, input: nil, replyArguments: [reply.path])

        #expect(result == ProcessResult(status: 2, stdout: "", stderr:
            "mailcloakctl checkpassword: descriptor 3 is not open; Dovecot passes user name and password there\n"))
    }

    @Test func userdbLookupExitsTwo() throws {
        let database = try Self.databaseWithApps()
        let reply = try ReplyProgram()

        let result = try runCheckpassword(
            database.url, input: Array("mailer\0\0".utf8), replyArguments: [reply.path], environment: ["AUTHORIZED": "1"])

        #expect(result == ProcessResult(status: 2, stdout: "", stderr:
            "mailcloakctl checkpassword: userdb and credentials lookups (AUTHORIZED is set) are not supported; "
            + "use checkpassword only as a passdb with mechanisms = plain login\n"))
        #expect(try reply.record() == nil)
    }
}

/// A shell script in place of Dovecot's checkpassword-reply. It writes USER,
/// HOME and its arguments to a file, so a test can check what it received.
final class ReplyProgram {
    let folder: TemporaryFolder
    let path: String
    let recordPath: String

    init() throws {
        folder = try TemporaryFolder()
        path = folder.path + "/reply"
        recordPath = folder.path + "/record"
        let script = """
            #!/bin/sh
            printf 'USER=%s\\nHOME=%s\\nargs=%s\\n' "${USER-unset}" "${HOME-unset}" "$*" > '\(recordPath)'

            """
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        guard chmod(path, 0o755) == 0 else { throw TestSetupError(description: "chmod \(path) failed") }
    }

    /// Returns what the program wrote, or nil when it did not run.
    func record() throws -> String? {
        guard FileManager.default.fileExists(atPath: recordPath) else { return nil }
        return try String(contentsOfFile: recordPath, encoding: .utf8)
    }
}

/// Runs `mailcloakctl --database-url URL checkpassword REPLY...` with `input` on descriptor 3
/// and waits for it. Descriptor 3 is a pipe, or closed when `input` is nil. With `holdingWriter`
/// the pipe's write end stays open until mailcloakctl exits, so it never sees the end of input.
func runCheckpassword(
    _ databaseURL: String, input: [UInt8]?, replyArguments: [String], environment: [String: String] = [:],
    holdingWriter: Bool = false
) throws -> ProcessResult {
    let folder = try TemporaryFolder()
    let outputPath = folder.path + "/stdout"
    let errorPath = folder.path + "/stderr"

    // Close-on-exec, so that a child that a parallel test spawns later does not keep the write
    // end open. dup2 onto descriptor 3 clears the flag for mailcloakctl alone. Swift's Glibc
    // module lacks pipe2, so a spawn between pipe and fcntl can still inherit the write end.
    var pipeEnds: [Int32] = [-1, -1]
    guard pipe(&pipeEnds) == 0 else { throw TestSetupError(description: "pipe failed: errno \(errno)") }
    for descriptor in pipeEnds { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
    defer { close(pipeEnds[0]) }
    if let input {
        // The inputs stay below the 64 KiB pipe buffer, so this write does not block.
        let written = input.withUnsafeBytes { write(pipeEnds[1], $0.baseAddress, $0.count) }
        guard written == input.count else { throw TestSetupError(description: "pipe write failed: errno \(errno)") }
    }
    if !holdingWriter { close(pipeEnds[1]) }
    defer { if holdingWriter { close(pipeEnds[1]) } }

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    if input != nil {
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[0], 3)
    } else {
        posix_spawn_file_actions_addclose(&actions, 3)
    }

    var merged = ProcessInfo.processInfo.environment
    merged["MAILCLOAK_DATABASE_URL"] = nil
    merged["AUTHORIZED"] = nil
    merged["HOME"] = "/root-of-the-test-runner"
    for (key, value) in environment { merged[key] = value }
    let environmentStrings = merged.map { "\($0.key)=\($0.value)" }
    let envp = environmentStrings.map { strdup($0) } + [nil]
    defer { for pointer in envp { free(pointer) } }

    let executable = try mailcloakctlPath()
    let arguments = [executable, "--database-url", databaseURL, "checkpassword"] + replyArguments
    let argv = arguments.map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }

    var processID: pid_t = 0
    let spawned = posix_spawn(&processID, executable, &actions, nil, argv, envp)
    guard spawned == 0 else { throw TestSetupError(description: "posix_spawn \(executable) failed: errno \(spawned)") }
    var status: Int32 = 0
    while waitpid(processID, &status, 0) < 0 && errno == EINTR {}

    // WIFEXITED and WEXITSTATUS are macros that Swift does not import.
    let exitedNormally = status & 0x7f == 0
    return ProcessResult(
        status: exitedNormally ? (status >> 8) & 0xff : 128 + (status & 0x7f),
        stdout: try String(contentsOfFile: outputPath, encoding: .utf8),
        stderr: try String(contentsOfFile: errorPath, encoding: .utf8))
}
