// Which protocol stages the policy service checks: RCPT runs recipient and
// sender checks, MAIL (smtpd_delay_reject=no) only sender checks, and every
// other stage passes without reading the snapshot.
import Config
import Model
import PolicyProtocol
import Resolver
import Testing

enum StageTable {
    static let passingStates = ["CONNECT", "EHLO", "HELO", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN", ""]

    /// MAIL-stage requests: the recipient, if Postfix sends one, is not checked.
    static let mailRows: [PolicyRow] = [
        PolicyRow("MAIL unknown recipient", state: "MAIL", recipient: "nobody@example.com", expect: .dunno),
        PolicyRow("MAIL foreign recipient", state: "MAIL", recipient: "friend@external.org", expect: .dunno),
        PolicyRow("MAIL no recipient", state: "MAIL", recipient: nil, expect: .dunno),
        PolicyRow("MAIL local sender", state: "MAIL", sender: "alice@example.com", recipient: nil,
                  expect: .localSenderRequiresAuth),
        PolicyRow("MAIL null sender", state: "MAIL", sender: "", recipient: "nobody@example.com", expect: .dunno),
        PolicyRow("MAIL own sender", state: "MAIL", sender: "alice@example.com", recipient: "nobody@example.com",
                  method: "xoauth2", login: "alice", expect: .dunno),
        PolicyRow("MAIL foreign owned sender", state: "MAIL", sender: "bob@example.com", recipient: nil,
                  method: "xoauth2", login: "alice", expect: .senderNotOwned),
        PolicyRow("MAIL authenticated null sender", state: "MAIL", sender: "", recipient: nil,
                  method: "xoauth2", login: "alice", expect: .senderNotOwned),
        PolicyRow("MAIL app listed sender", state: "MAIL", sender: "news@example.com", recipient: nil,
                  method: "login", login: "newsletter", expect: .dunno),
        PolicyRow("MAIL app unlisted sender", state: "MAIL", sender: "alice@example.com", recipient: nil,
                  method: "login", login: "newsletter", expect: .senderNotOwned),
        PolicyRow("MAIL unsupported method", state: "MAIL", sender: "alice@example.com", recipient: nil,
                  method: "GSSAPI", login: "alice", expect: .unsupportedAuthMethod),
    ]
}

@Suite struct PolicyStageTests {
    @Test(arguments: StageTable.passingStates)
    func otherStagePassesWithoutSnapshot(_ state: String) {
        let request = policyRequest(state: state, sender: "alice@example.com", recipient: "nobody@example.com")
        let resolver = Harness(snapshot: nil).resolver
        #expect(resolver.decide(request) == .decided(.dunno))
    }

    @Test(arguments: StageTable.passingStates)
    func otherStagePassesWithSnapshot(_ state: String) {
        let request = policyRequest(state: state, sender: "alice@example.com", recipient: "nobody@example.com",
                                    method: "CRAM-MD5", login: "alice")
        #expect(Harness().decide(request) == .dunno)
    }

    @Test func rcptWithoutSnapshotDefers() {
        let resolver = Harness(snapshot: nil).resolver
        let action = resolver.decide(policyRequest(recipient: "alice@example.com"))
        #expect(action == .decided(.internalError))
    }

    @Test func mailWithoutSnapshotDefers() {
        let resolver = Harness(snapshot: nil).resolver
        let action = resolver.decide(policyRequest(state: "MAIL", recipient: nil))
        #expect(action == .decided(.internalError))
    }

    @Test func missingSnapshotEncodesInternalError() {
        let action = Harness(snapshot: nil).decide(policyRequest(recipient: "alice@example.com"))
        #expect(action?.encoded == Array("action=451 4.3.0 Temporary internal error\n\n".utf8))
    }

    @Test(arguments: StageTable.mailRows)
    func mailStageChecksSenderOnly(_ row: PolicyRow) {
        #expect(Harness(config: row.config).decide(row.request) == row.expected)
    }

    @Test func mailStageSkipsRecipientLookup() {
        let request = policyRequest(state: "MAIL", sender: "someone@external.org", recipient: "nobody@example.com")
        #expect(Harness().resolver.decide(request) == .decided(.dunno))
    }
}
