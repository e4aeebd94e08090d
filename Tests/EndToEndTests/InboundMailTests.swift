// Mail from the outside: no AUTH, on the port where the policy service is
// asked once per RCPT TO. Postfix prefixes the policy text with
// "<recipient>: Recipient address rejected: ", because the call comes from
// smtpd_recipient_restrictions.

import Testing

extension EndToEnd {
    @Suite struct InboundMail {
        /// Runs swaks without AUTH on the normal port up to RCPT TO.
        private func sendUntilRecipient(_ stack: EndToEndStack, from sender: String, to recipient: String) throws
            -> SwaksResult
        {
            try stack.swaks(
                port: stack.postfix.smtpPort, ["--from", sender, "--to", recipient, "--quit-after", "RCPT"])
        }

        @Test func localUserRecipientAccepted() throws {
            let stack = try EndToEndStack.require()

            let result = try sendUntilRecipient(stack, from: "sender@remote.test", to: "alice@example.com")

            #expect(result.replies(to: "RCPT TO") == [["250 2.1.5 Ok"]])
            #expect(result.status == 0)
        }

        @Test func aliasRecipientDeliveredToOwner() throws {
            let stack = try EndToEndStack.require()
            let marker = uniqueMarker()

            let result = try stack.swaks(
                port: stack.postfix.smtpPort,
                [
                    "--from", "sender@remote.test", "--to", "sales@example.com", "--header", "Subject: \(marker)",
                ])
            let message = try stack.postfix.waitForMessage(
                in: stack.postfix.mailboxFolder("alice@example.com"), containing: "Subject: \(marker)")
            let headers = textLines(message)

            #expect(result.replies(to: "RCPT TO") == [["250 2.1.5 Ok"]])
            // The reply ends with the queue id, which changes every run.
            #expect(result.replies(to: ".").first?.first?.hasPrefix("250 2.0.0 Ok: queued as ") == true)
            #expect(result.status == 0)
            #expect(headers.contains("X-Original-To: sales@example.com"))
            #expect(headers.contains("Delivered-To: alice@example.com"))
        }

        @Test func unknownLocalRecipientRejected() throws {
            let stack = try EndToEndStack.require()

            let result = try sendUntilRecipient(stack, from: "sender@remote.test", to: "nobody@example.com")

            #expect(
                result.replies(to: "RCPT TO") == [
                    ["550 5.1.1 <nobody@example.com>: Recipient address rejected: No such user"]
                ])
            #expect(result.status == 24)
        }

        @Test func remoteRecipientRejectedWithoutAuth() throws {
            let stack = try EndToEndStack.require()

            let result = try sendUntilRecipient(stack, from: "sender@remote.test", to: "someone@remote.test")

            #expect(
                result.replies(to: "RCPT TO") == [
                    ["550 5.7.1 <someone@remote.test>: Recipient address rejected: Recipient domain not local"]
                ])
            #expect(result.status == 24)
        }

        @Test func localSenderWithoutAuthRejected() throws {
            let stack = try EndToEndStack.require()

            let result = try sendUntilRecipient(stack, from: "alice@example.com", to: "bob@example.com")

            #expect(result.replies(to: "MAIL FROM") == [["250 2.1.0 Ok"]])
            #expect(
                result.replies(to: "RCPT TO") == [
                    [
                        "553 5.7.1 <bob@example.com>: Recipient address rejected:"
                            + " Sending from local domains requires authentication"
                    ]
                ])
            #expect(result.status == 24)
        }

        @Test func nullSenderBounceAccepted() throws {
            let stack = try EndToEndStack.require()

            let result = try sendUntilRecipient(stack, from: "<>", to: "bob@example.com")

            #expect(result.transcriptLines.contains(" -> MAIL FROM:<>"))
            #expect(result.replies(to: "MAIL FROM") == [["250 2.1.0 Ok"]])
            #expect(result.replies(to: "RCPT TO") == [["250 2.1.5 Ok"]])
            #expect(result.status == 0)
        }
    }
}
