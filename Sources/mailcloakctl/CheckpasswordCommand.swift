// `mailcloakctl checkpassword REPLY-PROGRAM...`: the checkpassword program
// of Dovecot's checkpassword passdb, for apps that log in with PLAIN or LOGIN.
// It reads `username\0password\0` (and further NUL-terminated fields) from
// file descriptor 3, checks the secret against the enabled app of that name
// with libargon2, and on success executes the reply program with USER set to
// the app id as stored. Exit status: 1 wrong app or secret, 2 protocol error
// or invalid command line, 111 temporary failure (database unreachable).
// One run costs a process start, a PostgreSQL connection and one argon2
// verification (64 MiB for hashes that mailcloakctl writes). With
// `--cache-dir`, an app that logged in before is checked against its cached
// hash while PostgreSQL is unreachable (CheckpasswordCache).
import CArgon2
import Config
import Store

#if canImport(Glibc)
import Glibc
#endif

enum CheckpasswordCommand {
    /// Exit statuses of the checkpassword interface, as Dovecot 2.3 reads them.
    enum ExitStatus: Int32 {
        case rejected = 1
        case protocolError = 2
        case temporaryFailure = 111
    }

    /// A failure that ends the run with `status` and, unless empty, `message` on stderr.
    struct Failure: Error {
        let status: ExitStatus
        let message: String
    }

    /// Largest input accepted on descriptor 3, in bytes. Dovecot 2.3 sends at most 512.
    static let maxInputLength = 4096
    /// Seconds allowed for reading descriptor 3 to its end.
    static let inputTimeout = 5.0
    /// Seconds allowed for connecting to PostgreSQL, and for the lookup.
    static let databaseTimeout = 5.0
    /// How long a cached hash serves during an outage when --max-stale is not given.
    static let defaultMaxStale = 86_400.0
    /// Range of --max-stale: one second to 30 days.
    static let maxStaleRange = 1.0...(30 * 86_400.0)
    static let inputDescriptor: Int32 = 3

    /// Returns whether `arguments` (without the program name) run this command.
    static func isInvoked(_ arguments: [String]) -> Bool {
        guard let parsed = try? Arguments(arguments) else { return false }
        return parsed.words.first == "checkpassword" && !parsed.flags.contains("--help")
    }

    /// Runs the command. Returns the exit status unless the reply program replaced this process.
    static func run(_ arguments: [String]) -> Int32 {
        do throws(Failure) {
            try authenticate(arguments)
            return 0
        } catch {
            if !error.message.isEmpty { Output.err("mailcloakctl checkpassword: \(error.message)\n") }
            return error.status.rawValue
        }
    }

    private static func authenticate(_ arguments: [String]) throws(Failure) {
        let (replyProgram, cache) = try parseCommandLine(arguments)
        let input = try CheckpasswordInput.read(
            from: inputDescriptor, maxLength: maxInputLength, timeout: inputTimeout)
        var password = input.password
        defer { erase(&password) }

        // Dovecot sets AUTHORIZED=1 for userdb and credentials lookups, which send no password.
        if let authorized = getenv("AUTHORIZED"), authorized.pointee != 0 {
            throw Failure(status: .protocolError, message:
                "userdb and credentials lookups (AUTHORIZED is set) are not supported; "
                + "use checkpassword only as a passdb with mechanisms = plain login")
        }
        guard let username = String(validating: input.username, as: UTF8.self),
            !username.isEmpty, username.utf8.count <= Validation.maxAppIDLength
        else {
            throw Failure(status: .rejected, message: "")
        }

        let databaseURL = try resolveURL(arguments)
        let found: (id: String, secretHash: String)?
        do throws(Failure) {
            found = try lookUpApp(username, databaseURL: databaseURL)
        } catch {
            guard let cache, error.status == .temporaryFailure else { throw error }
            try authenticateFromCache(cache, username: username, password: password, outage: error, replyProgram: replyProgram)
            return
        }
        guard let app = found else {
            if let cache, let appID = Validation.appID(username).value, let problem = cache.remove(appID: appID) {
                Output.err("mailcloakctl checkpassword: \(problem)\n")
            }
            throw Failure(status: .rejected, message: "")
        }
        // A secret replaced since the entry was written must not keep working from the cache.
        if let cache, let problem = cache.forgetOtherHash(appID: app.id, secretHash: app.secretHash) {
            Output.err("mailcloakctl checkpassword: \(problem)\n")
        }
        try verify(password, againstHash: app.secretHash, appID: app.id)
        erase(&password)
        // A cache that cannot be written costs the next outage, not this login.
        if let cache, let problem = cache.store(appID: app.id, secretHash: app.secretHash) {
            Output.err("mailcloakctl checkpassword: \(problem)\n")
        }
        try executeReplyProgram(replyProgram, user: app.id)
    }

    /// Checks `password` against the hash that `cache` holds for `username` while PostgreSQL is
    /// unreachable (`outage`), and runs the reply program on a match. A missing or stale entry,
    /// and a secret that does not match, are temporary failures: the secret may have changed
    /// since the entry was written.
    private static func authenticateFromCache(
        _ cache: CheckpasswordCache, username: String, password: [UInt8], outage: Failure, replyProgram: [String]
    ) throws(Failure) {
        guard let appID = Validation.appID(username).value else {
            throw Failure(status: .temporaryFailure, message: outage.message + "; no cached hash for an invalid app id")
        }
        switch cache.lookUp(appID: appID) {
        case .miss(let reason):
            throw Failure(status: .temporaryFailure, message: outage.message + "; " + reason)
        case .hit(let secretHash, let age):
            do throws(Failure) {
                try verify(password, againstHash: secretHash, appID: appID)
            } catch {
                guard error.status == .rejected else { throw error }
                throw Failure(status: .temporaryFailure, message: outage.message
                    + "; the secret does not match the hash of app \(appID) cached \(Int(age)) s ago")
            }
            Output.err("mailcloakctl checkpassword: \(outage.message); app \(appID) checked against its hash cached \(Int(age)) s ago\n")
            try executeReplyProgram(replyProgram, user: appID)
        }
    }

    /// Returns the reply program and its arguments (the words after `checkpassword`), and the
    /// outage cache when `--cache-dir` is given.
    private static func parseCommandLine(_ arguments: [String]) throws(Failure) -> ([String], CheckpasswordCache?) {
        do throws(CLIError) {
            let parsed = try Arguments(arguments)
            try parsed.allowOnly(["--cache-dir", "--max-stale"], command: "checkpassword", usage: Usage.checkpassword)
            let replyProgram = Array(parsed.words.dropFirst())
            guard !replyProgram.isEmpty else {
                throw CLIError.usage("missing REPLY-PROGRAM", usage: Usage.checkpassword)
            }
            guard let folder = parsed.values["--cache-dir"] else {
                if parsed.values["--max-stale"] != nil {
                    throw CLIError.usage("--max-stale needs --cache-dir", usage: Usage.checkpassword)
                }
                return (replyProgram, nil)
            }
            guard folder.hasPrefix("/") else {
                throw CLIError.usage("invalid --cache-dir \"\(folder)\": expected an absolute path", usage: Usage.checkpassword)
            }
            var maxStale = defaultMaxStale
            if let text = parsed.values["--max-stale"] {
                guard let seconds = parseDuration(text), maxStaleRange.contains(seconds) else {
                    throw CLIError.usage(
                        "invalid --max-stale \"\(text)\": expected a duration from 1s to 720h, such as 30m or 24h",
                        usage: Usage.checkpassword)
                }
                maxStale = seconds
            }
            return (replyProgram, CheckpasswordCache(folder: folder, maxStale: maxStale))
        } catch {
            throw Failure(status: .protocolError, message: describe(error))
        }
    }

    /// Returns the database URL. A missing setting is a protocol error (exit 2), and an unreadable
    /// configuration is a temporary failure (exit 111), because an operator must fix it.
    private static func resolveURL(_ arguments: [String]) throws(Failure) -> String {
        do throws(CLIError) {
            return try resolveDatabaseURL(try Arguments(arguments))
        } catch {
            if case .usage = error { throw Failure(status: .protocolError, message: describe(error)) }
            throw Failure(status: .temporaryFailure, message: describe(error))
        }
    }

    private static func describe(_ error: CLIError) -> String {
        switch error {
        case .usage(let message, let usage): "\(message)\n\(usage)"
        case .runtime(let message): message
        }
    }

    /// Returns the enabled app whose id equals `username` folded to lower case, or nil when there is none.
    /// The rule is the one of the `password_query` in deploy/dovecot/dovecot-sql.conf.ext.
    private static func lookUpApp(
        _ username: String, databaseURL: String
    ) throws(Failure) -> (id: String, secretHash: String)? {
        do throws(StoreError) {
            let connection = try PostgresConnection(
                conninfo: databaseURL, applicationName: "mailcloak-checkpassword",
                connectTimeout: databaseTimeout, statementTimeout: databaseTimeout)
            defer { connection.close() }
            let rows = try connection.execute(
                "SELECT id, secret_hash FROM apps WHERE id = lower($1) AND enabled", [username])
            guard !rows.rows.isEmpty else { return nil }
            return (try rows.string(0, "id"), try rows.string(0, "secret_hash"))
        } catch {
            throw Failure(status: .temporaryFailure, message: "app lookup failed: \(error.description)")
        }
    }

    /// Checks `password` against a stored argon2 PHC string. A `{ARGON2ID}` or `{ARGON2I}`
    /// scheme prefix, which first-generation hashes carry, is removed. Other schemes fail.
    /// NOTE: The cost parameters come from the stored string unchecked, so a hash written with
    /// a large m= makes each login allocate that much memory.
    static func verify(_ password: [UInt8], againstHash storedHash: String, appID: String) throws(Failure) {
        let encoded = try stripScheme(storedHash, appID: appID)
        let type: Argon2_type
        if encoded.hasPrefix("$argon2id$") {
            type = Argon2_id
        } else if encoded.hasPrefix("$argon2i$") {
            type = Argon2_i
        } else {
            throw Failure(status: .rejected, message:
                "the secret hash of app \(appID) is not an argon2id or argon2i PHC string; "
                + "set a new secret with: mailcloakctl apps secret \(appID)")
        }

        let status = password.withUnsafeBytes { buffer in
            argon2_verify(encoded, buffer.baseAddress, buffer.count, type)
        }
        switch status {
        case ARGON2_OK.rawValue:
            return
        case ARGON2_VERIFY_MISMATCH.rawValue:
            throw Failure(status: .rejected, message: "")
        case ARGON2_MEMORY_ALLOCATION_ERROR.rawValue:
            throw Failure(status: .temporaryFailure, message:
                "argon2 verification for app \(appID) failed: \(String(cString: argon2_error_message(status)))")
        default:
            throw Failure(status: .rejected, message:
                "cannot verify the secret hash of app \(appID): \(String(cString: argon2_error_message(status))); "
                + "set a new secret with: mailcloakctl apps secret \(appID)")
        }
    }

    /// Returns `storedHash` without a `{ARGON2ID}` or `{ARGON2I}` prefix (any letter case, as Dovecot reads schemes).
    private static func stripScheme(_ storedHash: String, appID: String) throws(Failure) -> String {
        guard storedHash.hasPrefix("{") else { return storedHash }
        guard let end = storedHash.firstIndex(of: "}") else {
            throw Failure(status: .rejected, message:
                "the secret hash of app \(appID) starts with { but has no closing }; "
                + "set a new secret with: mailcloakctl apps secret \(appID)")
        }
        let scheme = storedHash[storedHash.index(after: storedHash.startIndex)..<end].uppercased()
        guard scheme == "ARGON2ID" || scheme == "ARGON2I" else {
            throw Failure(status: .rejected, message:
                "the secret hash of app \(appID) uses the {\(scheme.prefix(32))} scheme, which checkpassword "
                + "cannot verify (only ARGON2ID and ARGON2I); set a new secret with: mailcloakctl apps secret \(appID)")
        }
        return String(storedHash[storedHash.index(after: end)...])
    }

    /// Replaces this process with the reply program, with USER set to `user` and HOME removed,
    /// because apps have no home folder. Returns only by throwing when the program cannot start.
    private static func executeReplyProgram(_ replyProgram: [String], user: String) throws(Failure) {
        close(inputDescriptor)
        setenv("USER", user, 1)
        unsetenv("HOME")
        let argv = replyProgram.map { strdup($0) } + [nil]
        execv(replyProgram[0], argv)
        let reason = String(cString: strerror(errno))
        for pointer in argv { free(pointer) }
        throw Failure(status: .temporaryFailure, message: "executing \(replyProgram[0]) failed: \(reason)")
    }

    /// Overwrites the bytes of a secret before they are released.
    static func erase(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { explicit_bzero(base, buffer.count) }
        }
    }
}

/// The fields that Dovecot writes to descriptor 3: user name and password.
struct CheckpasswordInput {
    var username: [UInt8]
    var password: [UInt8]

    /// Reads `descriptor` to its end within `timeout` seconds and splits the first two NUL-terminated fields.
    /// - Throws: a protocol error when the input is longer than `maxLength`, lacks a field, or does not end in time.
    static func read(
        from descriptor: Int32, maxLength: Int, timeout: Double
    ) throws(CheckpasswordCommand.Failure) -> CheckpasswordInput {
        var data = try readAll(descriptor, maxLength: maxLength, timeout: timeout)
        defer { CheckpasswordCommand.erase(&data) }
        guard let userEnd = data.firstIndex(of: 0),
            let passwordEnd = data[(userEnd + 1)...].firstIndex(of: 0)
        else {
            throw protocolError("input on descriptor \(descriptor) lacks the NUL-terminated user name and password")
        }
        return CheckpasswordInput(
            username: Array(data[..<userEnd]), password: Array(data[(userEnd + 1)..<passwordEnd]))
    }

    private static func readAll(
        _ descriptor: Int32, maxLength: Int, timeout: Double
    ) throws(CheckpasswordCommand.Failure) -> [UInt8] {
        let deadline = monotonicSeconds() + timeout
        var data: [UInt8] = []
        // Room for the whole input, so that no growth leaves an unerased copy of the secret behind.
        data.reserveCapacity(maxLength + 1024)
        var buffer = [UInt8](repeating: 0, count: 1024)
        defer { CheckpasswordCommand.erase(&buffer) }
        while true {
            let remaining = deadline - monotonicSeconds()
            guard remaining > 0 else {
                CheckpasswordCommand.erase(&data)
                throw protocolError("reading descriptor \(descriptor) timed out after \(Int(timeout)) s")
            }
            var pollEntry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pollEntry, 1, Int32(min(remaining * 1000 + 1, 60_000)))
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 { continue }
            if ready < 0 || pollEntry.revents & Int16(POLLNVAL) != 0 {
                throw protocolError("descriptor \(descriptor) is not open; Dovecot passes user name and password there")
            }
            let count = Glibc.read(descriptor, &buffer, buffer.count)
            if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if count < 0 {
                CheckpasswordCommand.erase(&data)
                throw protocolError("reading descriptor \(descriptor) failed: \(String(cString: strerror(errno)))")
            }
            if count == 0 { return data }
            data += buffer[0..<count]
            if data.count > maxLength {
                CheckpasswordCommand.erase(&data)
                throw protocolError("input on descriptor \(descriptor) is longer than \(maxLength) bytes")
            }
        }
    }

    private static func protocolError(_ message: String) -> CheckpasswordCommand.Failure {
        CheckpasswordCommand.Failure(status: .protocolError, message: message)
    }
}
