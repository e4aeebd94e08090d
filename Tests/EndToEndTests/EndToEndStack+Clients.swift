// How the tests talk to the stack: postmap against mailcloak's socketmap
// tables, swaks and direct SMTP sessions against the private Postfix, and
// mailcloakctl against the test database. Also reads replies out of a swaks
// transcript by command, and waits for delivered messages.

import Foundation

extension EndToEndStack {
    /// Fixed EHLO name, so that requests do not depend on the machine.
    static let heloName = "client.test"

    var ctl: MailcloakCtl {
        MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url)
    }

    /// Looks `key` up in one of mailcloak's tables with `postmap -q`, through
    /// the private instance's configuration. Found: status 0 and the value on
    /// standard output; not found: status 1 and no output.
    func postmap(_ key: String, map: String) throws -> CommandResult {
        let table = "socketmap:inet:\(mailcloak.endpoint):\(map)"
        let configDirectory = postfix.directory.appendingPathComponent("etc").path
        return try TestEnvironment.run("/usr/sbin/postmap", ["-c", configDirectory, "-q", key, table])
    }

    /// Runs swaks against smtpd on `port` (the normal or the smtpd_delay_reject=no port).
    func swaks(port: UInt16, _ arguments: [String]) throws -> SwaksResult {
        try Swaks.run(["--server", "127.0.0.1:\(port)", "--ehlo", Self.heloName, "--timeout", "30"] + arguments)
    }

    /// The swaks options of `AUTH PLAIN` as the seeded app.
    static var appAuthArguments: [String] {
        ["--auth", "PLAIN", "--auth-user", appID, "--auth-password", appSecret, "--auth-hide-password"]
    }

    /// Opens an SMTP session on the normal port, sends EHLO and `AUTH XOAUTH2`
    /// for `user` with `token`, and returns the session with the AUTH reply.
    func xoauth2Session(user: String, token: String) throws -> (session: SMTPSession, auth: SMTPReply) {
        let session = try SMTPSession(port: postfix.smtpPort)
        _ = try session.readReply()
        _ = try session.command("EHLO \(Self.heloName)")
        let response = SMTPSession.xoauth2InitialResponse(user: user, token: token)
        let auth = try session.command("AUTH XOAUTH2 \(response)")
        return (session, auth)
    }
}

extension SwaksResult {
    /// Returns the server's reply lines to each command that starts with `prefix`
    /// (compared without case), in the order sent: `replies(to: "RCPT TO")`.
    ///
    /// swaks prints what it sends as ` -> ` lines (` ~> ` inside TLS), and a
    /// reply belongs to the last such line before it.
    func replies(to prefix: String) -> [[String]] {
        let expectedPrefix = prefix.uppercased()
        var found: [[String]] = []
        var lastCommand = ""
        var pending: [String] = []
        for line in transcriptLines {
            if line.hasPrefix(" -> ") || line.hasPrefix(" ~> ") {
                lastCommand = String(line.dropFirst(4))
                pending = []
                continue
            }
            let serverLines = Swaks.serverLines(in: line)
            guard let text = serverLines.first else { continue }
            pending.append(text)
            if !Swaks.isContinuation(text) {
                if lastCommand.uppercased().hasPrefix(expectedPrefix) {
                    found.append(pending)
                }
                pending = []
            }
        }
        return found
    }

    /// The lines swaks printed, without line ends.
    var transcriptLines: [String] {
        textLines(transcript)
    }
}

extension PostfixInstance {
    /// Waits until a message containing `marker` arrives in `folder` and returns it.
    /// - Throws: `TestEnvironmentError.mailNotDelivered` after `timeout` seconds.
    func waitForMessage(in folder: URL, containing marker: String, timeout: Double = 10) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if let message = messages(in: folder).first(where: { $0.contains(marker) }) {
                return message
            }
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        throw TestEnvironmentError.mailNotDelivered(path: folder.path, seconds: timeout)
    }
}

/// Splits text into lines at LF, CRLF or CR. swaks prints the message it
/// sends with CRLF line ends, and Swift reads CRLF as one Character, so
/// splitting at "\n" alone would leave those lines joined.
func textLines(_ text: String) -> [String] {
    text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init)
}

/// Returns a marker unique to one test, for subjects and addresses (`e2e-1a2b3c4d`).
func uniqueMarker() -> String {
    "e2e-\(UUID().uuidString.prefix(8).lowercased())"
}
