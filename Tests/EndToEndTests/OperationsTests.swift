// What happens while the stack runs: an alias added with mailcloakctl reaches
// Postfix without a restart, policy connections stay open between requests,
// and a Keycloak outage defers mail instead of rejecting it.

import Foundation
import Testing

extension EndToEnd {
    @Suite struct Operations {
        /// Maximum wait for a database change to reach the socketmap replies, in seconds.
        static let changeTimeout = 5.0

        @Test func addedAliasAcceptedAndDelivered() throws {
            let stack = try EndToEndStack.require()
            let marker = uniqueMarker()
            let before = try stack.postmap("info@example.com", map: "alias")

            try stack.ctl.runChecked(["aliases", "add", "info@example.com", "bob"])
            let after = try waitForFound("info@example.com", map: "alias", in: stack)
            let result = try stack.swaks(
                port: stack.postfix.smtpPort,
                [
                    "--from", "sender@remote.test", "--to", "info@example.com", "--header", "Subject: \(marker)",
                ])
            let message = try stack.postfix.waitForMessage(
                in: stack.postfix.mailboxFolder("bob@example.com"), containing: "Subject: \(marker)")
            let headers = textLines(message)

            #expect(before.status == 1)
            #expect(after.status == 0)
            #expect(after.standardOutput == "bob@example.com\n")
            #expect(result.replies(to: "RCPT TO") == [["250 2.1.5 Ok"]])
            #expect(result.status == 0)
            #expect(headers.contains("X-Original-To: info@example.com"))
            #expect(headers.contains("Delivered-To: bob@example.com"))
        }

        /// Each smtpd process keeps one policy connection open. If mailcloak
        /// closed it after a reply, every decision would arrive on a new
        /// connection (and Postfix would pause 1 s before each reconnect).
        @Test func policyConnectionReusedAcrossMessages() throws {
            let stack = try EndToEndStack.require()
            let sender = "\(uniqueMarker())@remote.test"
            let postfixLogOffset = stack.postfix.log().utf8.count
            let sessions = 3

            var recipientReplies: [[[String]]] = []
            for _ in 0..<sessions {
                let result = try stack.swaks(
                    port: stack.postfix.smtpPort,
                    [
                        "--from", sender, "--to", "alice@example.com,bob@example.com", "--quit-after", "RCPT",
                    ])
                recipientReplies.append(result.replies(to: "RCPT TO"))
            }
            let decisions = stack.mailcloak.waitForLogLines(count: 2 * sessions) { line in
                line.contains(" event=\"policy decision\" ") && line.contains(" sender=\(sender) ")
            }
            let connectionIDs = decisions.compactMap { Self.field("conn.id", in: $0) }
            let decisionsPerConnection = Dictionary(grouping: connectionIDs, by: { $0 }).mapValues(\.count)
            let smtpdProcesses = try waitForSmtpdProcesses(sessions: sessions, in: stack, after: postfixLogOffset)

            let accepted = [["250 2.1.5 Ok"], ["250 2.1.5 Ok"]]
            #expect(recipientReplies == Array(repeating: accepted, count: sessions))
            #expect(connectionIDs.count == 2 * sessions)
            // One policy connection per smtpd process, however many requests it carried.
            #expect(decisionsPerConnection.count == smtpdProcesses.count)
            #expect((decisionsPerConnection.values.max() ?? 0) >= 2)
        }

        @Test func keycloakOutageDefersRecipient() throws {
            let stack = try EndToEndStack.require()
            // Never looked up before, so no cached lookup result can hide the outage.
            let recipient = "\(uniqueMarker())@example.com"

            let during = try sendDuringKeycloakFailure(stack, to: recipient)
            let afterwards = try stack.swaks(
                port: stack.postfix.smtpPort,
                ["--from", "sender@remote.test", "--to", recipient, "--quit-after", "RCPT"])

            #expect(
                during.replies(to: "RCPT TO") == [
                    ["451 4.3.0 <\(recipient)>: Recipient address rejected: Temporary authentication/lookup failure"]
                ])
            #expect(during.status == 24)
            // A failed lookup is not cached, so once Keycloak responds again the address is unknown.
            #expect(
                afterwards.replies(to: "RCPT TO") == [
                    ["550 5.1.1 <\(recipient)>: Recipient address rejected: No such user"]
                ])
        }

        /// Makes every keycloak_dev.py endpoint answer HTTP 500, sends up to
        /// RCPT TO, and ends the failure again, also when sending throws.
        private func sendDuringKeycloakFailure(_ stack: EndToEndStack, to recipient: String) throws -> SwaksResult {
            try stack.keycloak.configure(#"{"failure": "500", "failure_scope": "all"}"#)
            defer { try? stack.keycloak.configure(#"{"failure": null}"#) }
            return try stack.swaks(
                port: stack.postfix.smtpPort,
                ["--from", "sender@remote.test", "--to", recipient, "--quit-after", "RCPT"])
        }

        /// Polls `postmap -q` until the key is found or `changeTimeout` passes, and returns the last result.
        private func waitForFound(_ key: String, map: String, in stack: EndToEndStack) throws -> CommandResult {
            let deadline = Date().addingTimeInterval(Self.changeTimeout)
            var result = try stack.postmap(key, map: map)
            while result.status != 0 && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.1)
                result = try stack.postmap(key, map: map)
            }
            return result
        }

        /// Returns the process ids of the smtpd processes (normal port) that
        /// logged `connect from` after `offset`, waiting until `sessions`
        /// connects are logged (postlogd writes the log asynchronously).
        private func waitForSmtpdProcesses(sessions: Int, in stack: EndToEndStack, after offset: Int) throws
            -> Set<String>
        {
            let deadline = Date().addingTimeInterval(5)
            var processes: [String] = []
            repeat {
                let log = stack.postfix.log()
                let recent = String(decoding: Array(log.utf8).dropFirst(offset), as: UTF8.self)
                processes = recent.split(separator: "\n").compactMap { line in
                    // The smtpd_delay_reject=no port logs as postfix/smtpd-nodelay, so it does not match.
                    guard line.contains(" postfix/smtpd["), line.contains(": connect from ") else { return nil }
                    let afterName = line.split(separator: "postfix/smtpd[", maxSplits: 1).last ?? ""
                    return afterName.split(separator: "]", maxSplits: 1).first.map(String.init)
                }
                if processes.count >= sessions {
                    break
                }
                Thread.sleep(forTimeInterval: 0.05)
            } while Date() < deadline
            return Set(processes)
        }

        /// Returns the value of `name=value` in a key=value log line (unquoted values only).
        static func field(_ name: String, in line: String) -> String? {
            let prefix = name + "="
            return line.split(separator: " ").first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
        }
    }
}
