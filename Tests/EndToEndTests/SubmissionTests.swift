// Authenticated submission: an identity-provider user with AUTH XOAUTH2
// (Dovecot checks the token at keycloak_dev's introspection endpoint) and an
// application with AUTH PLAIN (Dovecot checks the argon2id hash that
// mailcloakctl stored). The policy service decides at RCPT TO which senders
// each may use.

import Testing

/// A sender address and the reply expected to `RCPT TO:<someone@remote.test>`.
struct SenderCase: Sendable, CustomTestStringConvertible {
    let sender: String
    let recipientReply: String

    var testDescription: String { sender }
}

extension EndToEnd {
    @Suite struct Submission {
        static let accepted = "250 2.1.5 Ok"
        static let notOwned =
            "553 5.7.1 <someone@remote.test>: Recipient address rejected: Sender not owned by authenticated user"

        static let userCases: [SenderCase] = [
            SenderCase(sender: "alice@example.com", recipientReply: accepted),
            SenderCase(sender: "sales@example.com", recipientReply: accepted),
            SenderCase(sender: "support@example.com", recipientReply: notOwned),
            SenderCase(sender: "bob@example.com", recipientReply: notOwned),
        ]

        static let appCases: [SenderCase] = [
            SenderCase(sender: EndToEndStack.appSender, recipientReply: accepted),
            SenderCase(sender: "alice@example.com", recipientReply: notOwned),
        ]

        @Test(arguments: userCases)
        func xoauth2UserSenderOwnership(_ senderCase: SenderCase) throws {
            let stack = try EndToEndStack.require()
            let token = try stack.keycloak.accessToken(username: "alice", password: "alice-dev-password")

            let (session, auth) = try stack.xoauth2Session(user: "alice@example.com", token: token)
            let mail = try session.command("MAIL FROM:<\(senderCase.sender)>")
            let recipient = try session.command("RCPT TO:<someone@remote.test>")
            _ = try session.command("QUIT")

            #expect(auth.lines == ["235 2.7.0 Authentication successful"])
            #expect(mail.lines == ["250 2.1.0 Ok"])
            #expect(recipient.lines == [senderCase.recipientReply])
        }

        @Test(arguments: appCases)
        func plainAppSenderAllowList(_ senderCase: SenderCase) throws {
            let stack = try EndToEndStack.require()

            let result = try stack.swaks(
                port: stack.postfix.smtpPort,
                EndToEndStack.appAuthArguments + [
                    "--from", senderCase.sender, "--to", "someone@remote.test", "--quit-after", "RCPT",
                ])

            #expect(result.replies(to: "AUTH") == [["235 2.7.0 Authentication successful"]])
            #expect(result.replies(to: "MAIL FROM") == [["250 2.1.0 Ok"]])
            #expect(result.replies(to: "RCPT TO") == [[senderCase.recipientReply]])
        }
    }
}
