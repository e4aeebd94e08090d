import PolicyProtocol
import Testing

@Test func parseErrorDescribesLineLimit() {
    #expect(String(describing: PolicyParseError.lineTooLong(limit: 4096)) == "line longer than 4096 bytes")
}

@Test func parseErrorDescribesDuplicate() {
    let error = PolicyParseError.duplicateAttribute(name: "recipient", line: 5)
    #expect(String(describing: error) == "attribute recipient repeated on line 5")
}
