import Testing

@testable import Config

private func parse(_ text: String) -> Result<YAMLNode?, ConfigError> {
    Result { () throws(ConfigError) in try YAMLDocument.parse(text) }
}

private func error(_ text: String) -> ConfigError? {
    if case .failure(let error) = parse(text) { return error }
    return nil
}

@Test func documentBuildsTreeWithLines() throws {
    let text = """
        # comment
        server:
          io_timeout: 30s
        list:
          - a
          - "b"
        """
    let root = try #require(try YAMLDocument.parse(text))
    let expected = YAMLNode(
        content: .mapping([
            YAMLEntry(
                key: "server", keyLine: 2,
                value: YAMLNode(
                    content: .mapping([
                        YAMLEntry(key: "io_timeout", keyLine: 3, value: YAMLNode(content: .scalar("30s", isPlain: true), line: 3))
                    ]), line: 3)),
            YAMLEntry(
                key: "list", keyLine: 4,
                value: YAMLNode(
                    content: .sequence([
                        YAMLNode(content: .scalar("a", isPlain: true), line: 5),
                        YAMLNode(content: .scalar("b", isPlain: false), line: 6),
                    ]), line: 5)),
        ]), line: 2)
    #expect(root == expected)
}

@Test func documentEmptyTextHasNoRoot() throws {
    #expect(try YAMLDocument.parse("") == nil)
    #expect(try YAMLDocument.parse("# only a comment\n") == nil)
}

@Test(arguments: ["", "~", "null", "Null", "NULL"])
func plainNullWordsAreNull(_ word: String) throws {
    let root = try #require(try YAMLDocument.parse("key: \(word)\n"))
    guard case .mapping(let entries) = root.content else {
        Issue.record("root is not a mapping")
        return
    }
    #expect(entries[0].value.isNull)
    #expect(entries[0].value.scalarText == nil)
}

@Test func quotedNullWordIsString() throws {
    let root = try #require(try YAMLDocument.parse("key: \"null\"\n"))
    guard case .mapping(let entries) = root.content else {
        Issue.record("root is not a mapping")
        return
    }
    #expect(entries[0].value.isNull == false)
    #expect(entries[0].value.scalarText == "null")
}

@Test func documentRejectsAlias() {
    let text = """
        a: &x [1, 2]
        b: *x
        """
    #expect(error(text) == ConfigError(.anchorOrAlias, keyPath: "a", line: 1))
}

@Test func documentRejectsBillionLaughs() {
    var text = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in 1...9 {
        let previous = "*a\(level - 1)"
        text += "a\(level): &a\(level) [" + Array(repeating: previous, count: 9).joined(separator: ", ") + "]\n"
    }
    #expect(error(text)?.problem == .anchorOrAlias)
}

@Test func documentRejectsUndefinedAlias() {
    #expect(error("b: *undefined\n") == ConfigError(.anchorOrAlias, keyPath: "b", line: 1))
}

@Test func documentRejectsExplicitTag() {
    let expected = ConfigError(.tag("tag:yaml.org,2002:str"), keyPath: "server.reactor_threads", line: 2)
    #expect(error("server:\n  reactor_threads: !!str 4\n") == expected)
}

@Test func documentRejectsSecondDocument() {
    #expect(error("a: 1\n---\nb: 2\n") == ConfigError(.multipleDocuments, line: 2))
}

@Test func documentRejectsDuplicateKey() {
    let text = """
        server:
          io_timeout: 1s
          io_timeout: 2s
        """
    #expect(error(text) == ConfigError(.duplicateKey, keyPath: "server.io_timeout", line: 3))
}

@Test func documentRejectsCollectionKey() {
    #expect(error("? [a, b]\n: c\n")?.problem == .invalidValue(found: "a collection as a key", expected: "a scalar key"))
}

@Test func documentAcceptsMaximumDepth() throws {
    let text = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
    #expect(try YAMLDocument.parse(text) != nil)
}

@Test func documentRejectsExcessiveDepth() {
    let text = String(repeating: "[", count: 33) + String(repeating: "]", count: 33)
    #expect(error(text)?.problem == .nestingTooDeep(limit: 32))
}

@Test func documentRejectsDeepNestingEarly() {
    // 100000 open brackets: the error comes at the 33rd, long before libyaml's own limits.
    let text = String(repeating: "[", count: 100_000)
    #expect(error(text)?.problem == .nestingTooDeep(limit: 32))
}

@Test func documentRejectsOversizedText() {
    let text = "a: " + String(repeating: "x", count: 1 << 20)
    #expect(error(text) == ConfigError(.documentTooLarge(limit: 1 << 20)))
}

@Test func documentReportsSyntaxErrorLine() {
    let text = """
        server:
          io_timeout: 30s
         bad: [
        """
    let found = error(text)
    #expect(found?.line == 3)
    if case .syntax = found?.problem {
    } else {
        Issue.record("expected a syntax error, got \(String(describing: found))")
    }
}
