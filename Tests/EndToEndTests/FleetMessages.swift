// Messages the fleet scenarios send through Postfix, each with the replies a
// client must see, and a background load that keeps sending them while a
// scenario kills, drains or reconfigures parts of the fleet. swaks sends
// everything except AUTH XOAUTH2, which swaks lacks; a small Python script
// with smtplib sends that.

import Foundation
import Locking
import Synchronization

/// One SMTP transaction up to RCPT TO and the replies the client must get.
///
/// Replies are written `COMMAND CODE TEXT`, for example `RCPT 250 2.1.5 Ok`;
/// the lines of a multi-line reply are joined with `|`.
struct FleetMessage: Sendable, CustomStringConvertible {
    enum Login: Sendable {
        /// No AUTH: mail from outside.
        case none
        /// AUTH PLAIN as the seeded app, checked by Dovecot against the argon2id hash from the apps table.
        case app
        /// AUTH XOAUTH2 as a keycloak_dev.py user, with a token from the password grant.
        case oauth(email: String, token: String)
    }

    static let accepted = "RCPT 250 2.1.5 Ok"
    static let authenticated = "AUTH 235 2.7.0 Authentication successful"
    static let mailAccepted = "MAIL 250 2.1.0 Ok"

    let login: Login
    let sender: String
    let recipient: String
    let expected: [String]

    var description: String {
        switch login {
        case .none: return "inbound \(sender) -> \(recipient)"
        case .app: return "app \(sender) -> \(recipient)"
        case .oauth(let email, _): return "oauth \(email) as \(sender) -> \(recipient)"
        }
    }

    /// Mail from outside to a local recipient.
    static func inbound(to recipient: String, expecting reply: String) -> FleetMessage {
        FleetMessage(login: .none, sender: "sender@remote.test", recipient: recipient, expected: [mailAccepted, reply])
    }

    /// Mail from the seeded app to a remote recipient.
    static func app(from sender: String, expecting reply: String) -> FleetMessage {
        FleetMessage(
            login: .app, sender: sender, recipient: "someone@remote.test",
            expected: [authenticated, mailAccepted, reply])
    }

    /// Mail from a keycloak_dev.py user to a remote recipient.
    static func oauth(_ email: String, token: String, from sender: String, expecting reply: String) -> FleetMessage {
        FleetMessage(
            login: .oauth(email: email, token: token), sender: sender, recipient: "someone@remote.test",
            expected: [authenticated, mailAccepted, reply])
    }

    /// The reply to RCPT TO when an authenticated client uses a sender it may not use.
    static let senderNotOwned =
        "RCPT 553 5.7.1 <someone@remote.test>: Recipient address rejected: Sender not owned by authenticated user"

    /// Returns the reply to RCPT TO for an address that is neither a user nor an alias.
    static func noSuchUser(_ recipient: String) -> String {
        "RCPT 550 5.1.1 <\(recipient)>: Recipient address rejected: No such user"
    }

    /// Returns the messages that the load and the outage scenarios send: one of
    /// every kind of decision, the OAuth ones with alice's token.
    static func mix(aliceToken: String) -> [FleetMessage] {
        [
            inbound(to: "alice@example.com", expecting: accepted),
            inbound(to: "sales@example.com", expecting: accepted),
            inbound(to: "nobody@example.com", expecting: noSuchUser("nobody@example.com")),
            app(from: FleetStack.appSender, expecting: accepted),
            app(from: "alice@example.com", expecting: senderNotOwned),
            oauth("alice@example.com", token: aliceToken, from: "alice@example.com", expecting: accepted),
            oauth("alice@example.com", token: aliceToken, from: "sales@example.com", expecting: accepted),
            oauth("alice@example.com", token: aliceToken, from: "bob@example.com", expecting: senderNotOwned),
        ]
    }
}

/// A message sent and the replies it got.
struct FleetOutcome: Sendable, CustomStringConvertible {
    let message: FleetMessage
    let replies: [String]

    var matches: Bool { replies == message.expected }
    var description: String { "\(message): got \(replies), expected \(message.expected)" }
}

extension FleetStack {
    /// Sends one message up to RCPT TO and returns the replies the client saw.
    /// A message that could not be sent at all returns its error as its one reply.
    func send(_ message: FleetMessage) -> FleetOutcome {
        do {
            switch message.login {
            case .none, .app:
                return FleetOutcome(message: message, replies: try sendWithSwaks(message))
            case .oauth(let email, let token):
                return FleetOutcome(message: message, replies: try sendWithXOAUTH2(message, email: email, token: token))
            }
        } catch {
            return FleetOutcome(message: message, replies: ["error \(error)"])
        }
    }

    /// Sends every message once, in order, and returns the outcomes.
    func sendAll(_ messages: [FleetMessage]) -> [FleetOutcome] {
        messages.map(send)
    }

    /// Gets an access token for a demo user (password `<name>-dev-password`).
    func accessToken(for username: String) throws -> String {
        try keycloak.accessToken(username: username, password: "\(username)-dev-password")
    }

    private func sendWithSwaks(_ message: FleetMessage) throws -> [String] {
        var arguments = [
            "--server", "127.0.0.1:\(postfix.smtpPort)", "--ehlo", EndToEndStack.heloName, "--timeout", "30",
            "--from", message.sender, "--to", message.recipient, "--quit-after", "RCPT",
        ]
        if case .app = message.login {
            arguments += [
                "--auth", "PLAIN", "--auth-user", Self.appID, "--auth-password", Self.appSecret, "--auth-hide-password",
            ]
        }
        let result = try Swaks.run(arguments)
        var replies: [String] = []
        for (command, prefix) in [("AUTH", "AUTH"), ("MAIL", "MAIL FROM"), ("RCPT", "RCPT TO")] {
            for reply in result.replies(to: prefix) {
                replies.append("\(command) " + reply.joined(separator: "|"))
            }
        }
        return replies
    }

    private func sendWithXOAUTH2(_ message: FleetMessage, email: String, token: String) throws -> [String] {
        let result = try TestEnvironment.run(
            "/usr/bin/python3",
            [
                xoauth2Script.path, String(postfix.smtpPort), EndToEndStack.heloName, email, token, message.sender,
                message.recipient,
            ], timeout: 60)
        guard result.status == 0 else {
            return ["error xoauth2 script exited \(result.status): \(result.standardError)"]
        }
        return textLines(result.standardOutput).filter { !$0.isEmpty }
    }

    /// The Python script that sends AUTH XOAUTH2, MAIL FROM and RCPT TO and prints
    /// one `COMMAND CODE TEXT` line per reply; `writeXOAUTH2Script(into:)` writes it at start.
    var xoauth2Script: URL {
        directory.appendingPathComponent("xoauth2-send.py")
    }

    /// Writes the XOAUTH2 script into the run's folder.
    static func writeXOAUTH2Script(into directory: URL) throws {
        try xoauth2ScriptText.write(
            to: directory.appendingPathComponent("xoauth2-send.py"), atomically: true, encoding: .utf8)
    }

    private static let xoauth2ScriptText = #"""
        # Usage: xoauth2-send.py PORT HELO USER TOKEN SENDER RECIPIENT
        # Sends AUTH XOAUTH2 (RFC 7628 style initial response), MAIL FROM and
        # RCPT TO to 127.0.0.1:PORT and prints each reply as "COMMAND CODE TEXT".
        import smtplib
        import sys

        port, helo, user, token, sender, recipient = sys.argv[1:7]


        def show(command, code, text):
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            print(command, code, text.replace("\n", "|"), flush=True)


        client = smtplib.SMTP("127.0.0.1", int(port), local_hostname=helo, timeout=30)
        client.ehlo()
        initial = "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)
        try:
            # A rejected token gets a 334 challenge; the empty answer then gets the final 535.
            code, text = client.auth("XOAUTH2", lambda challenge=None: initial if challenge is None else "")
        except smtplib.SMTPAuthenticationError as error:
            code, text = error.smtp_code, error.smtp_error
        show("AUTH", code, text)
        if code == 235:
            code, text = client.docmd("MAIL", "FROM:<%s>" % sender)
            show("MAIL", code, text)
            code, text = client.docmd("RCPT", "TO:<%s>" % recipient)
            show("RCPT", code, text)
        client.quit()
        """#
}

/// Messages sent in a loop by background threads until `stop()`, so that a
/// scenario can change the fleet while mail flows.
final class FleetLoad: Sendable {
    private let outcomes = Locked<[FleetOutcome]>([])
    private let running = Atomic<Bool>(true)
    private let finished = Atomic<Int>(0)
    private let workers: Int

    /// Starts `workers` threads; each sends `messages` in order, over and over,
    /// starting at a different message.
    init(stack: FleetStack, messages: [FleetMessage], workers: Int = 2) {
        self.workers = workers
        for worker in 0..<workers {
            let thread = Thread { [self] in
                var next = worker * messages.count / max(workers, 1)
                while running.load(ordering: .relaxed) {
                    let outcome = stack.send(messages[next % messages.count])
                    outcomes.withLock { $0.append(outcome) }
                    next += 1
                }
                finished.add(1, ordering: .relaxed)
            }
            thread.start()
        }
    }

    /// The number of messages sent so far.
    var count: Int { outcomes.withLock { $0.count } }

    /// Waits until `count` more messages than now have been sent; false after `timeout` seconds.
    func waitForMore(_ count: Int, timeout: Double = 60) -> Bool {
        let target = self.count + count
        return waitUntil(timeout: timeout) { self.count >= target }
    }

    /// Stops the threads after their current message, waits for them, and returns every outcome.
    func stop() -> [FleetOutcome] {
        running.store(false, ordering: .relaxed)
        _ = waitUntil(timeout: 90) { finished.load(ordering: .relaxed) == workers }
        return outcomes.withLock { $0 }
    }
}
