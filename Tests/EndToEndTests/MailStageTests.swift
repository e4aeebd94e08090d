// The smtpd_delay_reject=no port, where the policy service is also asked at
// MAIL FROM (protocol_state=MAIL), so a sender the client may not use is
// rejected before any recipient. Postfix then prefixes the policy text with
// "<sender>: Sender address rejected: ".

import Testing

extension EndToEnd {
    @Suite struct MailStage {
        @Test func unownedSenderRejectedAtMail() throws {
            let stack = try EndToEndStack.require()

            let result = try stack.swaks(
                port: stack.postfix.noDelayPort,
                EndToEndStack.appAuthArguments + [
                    "--from", "alice@example.com", "--to", "someone@remote.test", "--quit-after", "RCPT",
                ])

            #expect(result.replies(to: "AUTH") == [["235 2.7.0 Authentication successful"]])
            #expect(
                result.replies(to: "MAIL FROM") == [
                    [
                        "553 5.7.1 <alice@example.com>: Sender address rejected:"
                            + " Sender not owned by authenticated user"
                    ]
                ])
            #expect(result.replies(to: "RCPT TO") == [])
            #expect(result.status == 23)
        }

        @Test func unauthenticatedLocalSenderRejectedAtMail() throws {
            let stack = try EndToEndStack.require()

            let result = try stack.swaks(
                port: stack.postfix.noDelayPort,
                ["--from", "alice@example.com", "--to", "bob@example.com", "--quit-after", "RCPT"])

            #expect(
                result.replies(to: "MAIL FROM") == [
                    [
                        "553 5.7.1 <alice@example.com>: Sender address rejected:"
                            + " Sending from local domains requires authentication"
                    ]
                ])
            #expect(result.replies(to: "RCPT TO") == [])
            #expect(result.status == 23)
        }

        @Test func ownedAppSenderAcceptedAtMail() throws {
            let stack = try EndToEndStack.require()

            let result = try stack.swaks(
                port: stack.postfix.noDelayPort,
                EndToEndStack.appAuthArguments + [
                    "--from", EndToEndStack.appSender, "--to", "someone@remote.test", "--quit-after", "RCPT",
                ])

            #expect(result.replies(to: "MAIL FROM") == [["250 2.1.0 Ok"]])
            #expect(result.replies(to: "RCPT TO") == [["250 2.1.5 Ok"]])
            #expect(result.status == 0)
        }
    }
}
