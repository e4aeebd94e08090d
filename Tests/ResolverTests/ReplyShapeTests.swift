// The wire shape of every policy reply the resolver returns in these tests.
// A reply starts with `action=`, ends with exactly one blank line and has no
// CR. A reject or defer also has a 3-digit code, an enhanced status of the
// same class and a text. Postfix lets mail through on some malformed
// replies, so the shape is checked over the union of all policy tables.
import Config
import Model
import PolicyProtocol
import Resolver
import Testing

enum AllPolicyRows {
    static var rows: [PolicyRow] {
        RecipientTable.rows + RecipientTable.delimiterRows + SenderTable.allRows + StageTable.mailRows
            + FailureTable.rows.map(\.row)
    }
}

@Suite struct ReplyShapeTests {
    @Test(arguments: PolicyAction.namedActions)
    func namedActionHasReplyShape(_ action: PolicyAction) {
        expectPolicyReplyShape(action)
    }

    @Test func everyTableRowHasReplyShape() {
        for row in AllPolicyRows.rows {
            guard let action = Harness(config: row.config).decide(row.request) else { continue }
            expectPolicyReplyShape(action)
        }
        for failure in FailureTable.rows {
            let directory = TableDirectory(unavailable: failure.failingKeys)
            guard let action = Harness(config: failure.row.config, directory: directory).decide(failure.row.request)
            else { continue }
            expectPolicyReplyShape(action)
        }
    }

    @Test func everyExpectedActionHasReplyShape() {
        for row in AllPolicyRows.rows {
            expectPolicyReplyShape(row.expected)
        }
    }

    @Test func tablesCoverEveryResolverAction() {
        let expected = Set(AllPolicyRows.rows.map(\.expected.actionText))
        let resolverActions: [PolicyAction] = [
            .dunno, .noSuchUser, .recipientDomainNotLocal, .localSenderRequiresAuth, .senderNotOwned,
            .unsupportedAuthMethod, .lookupFailure,
        ]
        for action in resolverActions {
            #expect(expected.contains(action.actionText), "no table row expects \(action.actionText)")
        }
    }

    @Test func dunnoEncodesExactBytes() {
        #expect(PolicyAction.dunno.encoded == Array("action=DUNNO\n\n".utf8))
    }
}
