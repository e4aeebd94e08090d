import Testing

@testable import PolicyProtocol

private func text(_ action: PolicyAction) -> String { String(decoding: action.encoded, as: UTF8.self) }

struct NamedActionCase: CustomTestStringConvertible, Sendable {
    var action: PolicyAction
    var wire: String
    var testDescription: String { wire }
}

private let namedCases: [NamedActionCase] = [
    .init(action: .dunno, wire: "action=DUNNO\n\n"),
    .init(action: .noSuchUser, wire: "action=550 5.1.1 No such user\n\n"),
    .init(action: .recipientDomainNotLocal, wire: "action=550 5.7.1 Recipient domain not local\n\n"),
    .init(
        action: .localSenderRequiresAuth,
        wire: "action=553 5.7.1 Sending from local domains requires authentication\n\n"),
    .init(action: .senderNotOwned, wire: "action=553 5.7.1 Sender not owned by authenticated user\n\n"),
    .init(action: .unsupportedAuthMethod, wire: "action=553 5.7.1 Unsupported authentication method\n\n"),
    .init(action: .lookupFailure, wire: "action=451 4.3.0 Temporary authentication/lookup failure\n\n"),
    .init(action: .internalError, wire: "action=451 4.3.0 Temporary internal error\n\n"),
    .init(action: .overloaded, wire: "action=451 4.3.2 Service busy, try again later\n\n"),
]

@Test(arguments: namedCases)
func namedActionEncodesExactly(_ testCase: NamedActionCase) {
    #expect(text(testCase.action) == testCase.wire)
}

@Test func namedActionsListCoversEveryConstant() {
    #expect(PolicyAction.namedActions == namedCases.map(\.action))
}

/// Checks the reply against the shape Postfix needs, without using PolicyAction's own validation.
private func wireShapeProblem(_ encoded: [UInt8]) -> String? {
    let reply = String(decoding: encoded, as: UTF8.self)
    guard reply.hasPrefix("action="), reply.hasSuffix("\n\n") else { return "not action=...\\n\\n" }
    let value = reply.dropFirst("action=".count).dropLast(2)
    if value.isEmpty { return "empty action" }
    if value.allSatisfy(\.isWholeNumber) { return "digits only" }
    if encoded.contains(0x0D) { return "contains CR" }
    if value.contains("\n") { return "line break inside the action" }
    if value == "DUNNO" { return nil }
    let fullLine = /^([45])\d\d \1\.\d{1,3}\.\d{1,3} [^\x00-\x1F\x7F]+$/
    return value.wholeMatch(of: fullLine) == nil ? "not NXX X.Y.Z text" : nil
}

@Test(arguments: PolicyAction.namedActions)
func namedActionHasPostfixShape(_ action: PolicyAction) {
    #expect(wireShapeProblem(action.encoded) == nil)
    #expect(action.shapeViolation == nil)
}

@Test func encodeIntoAppendsToBuffer() {
    var buffer = Array("x".utf8)
    PolicyAction.noSuchUser.encode(into: &buffer)
    #expect(buffer == Array("xaction=550 5.1.1 No such user\n\n".utf8))
}

@Test func actionTextOmitsPrefix() {
    #expect(PolicyAction.overloaded.actionText == "451 4.3.2 Service busy, try again later")
    #expect(PolicyAction.dunno.actionText == "DUNNO")
}

// MARK: - Shape validation

struct ShapeCase: CustomTestStringConvertible, Sendable {
    var label: String
    var action: PolicyAction
    var violation: String?
    var testDescription: String { label }
}

private let shapeCases: [ShapeCase] = [
    .init(label: "lowest defer", action: .deferred(code: 400, status: "4.0.0", text: "x"), violation: nil),
    .init(
        label: "highest reject", action: .reject(code: 599, status: "5.999.999", text: "Long enough"),
        violation: nil),
    .init(
        label: "reject with 4xx code", action: .reject(code: 450, status: "4.1.1", text: "x"),
        violation: "code 450 is outside 500-599"),
    .init(
        label: "defer with 5xx code", action: .deferred(code: 550, status: "5.1.1", text: "x"),
        violation: "code 550 is outside 400-499"),
    .init(
        label: "code below range", action: .deferred(code: 399, status: "4.0.0", text: "x"),
        violation: "code 399 is outside 400-499"),
    .init(
        label: "code above range", action: .reject(code: 600, status: "5.0.0", text: "x"),
        violation: "code 600 is outside 500-599"),
    .init(
        label: "status class differs", action: .reject(code: 550, status: "4.1.1", text: "x"),
        violation: "status class 4 differs from the code's first digit"),
    .init(
        label: "status with two parts", action: .reject(code: 550, status: "5.1", text: "x"),
        violation: "status \"5.1\" is not of the form d.ddd.ddd"),
    .init(
        label: "status with four parts", action: .reject(code: 550, status: "5.1.1.1", text: "x"),
        violation: "status \"5.1.1.1\" is not of the form d.ddd.ddd"),
    .init(
        label: "status part too long", action: .reject(code: 550, status: "5.1234.1", text: "x"),
        violation: "status \"5.1234.1\" is not of the form d.ddd.ddd"),
    .init(
        label: "status part empty", action: .reject(code: 550, status: "5..1", text: "x"),
        violation: "status \"5..1\" is not of the form d.ddd.ddd"),
    .init(
        label: "status class two digits", action: .reject(code: 550, status: "55.1.1", text: "x"),
        violation: "status \"55.1.1\" is not of the form d.ddd.ddd"),
    .init(
        label: "status letters", action: .reject(code: 550, status: "5.a.1", text: "x"),
        violation: "status \"5.a.1\" is not of the form d.ddd.ddd"),
    .init(
        label: "empty status", action: .reject(code: 550, status: "", text: "x"),
        violation: "status \"\" is not of the form d.ddd.ddd"),
    .init(
        label: "empty text", action: .reject(code: 550, status: "5.1.1", text: ""),
        violation: "text is empty"),
    .init(
        label: "text with crlf", action: .reject(code: 550, status: "5.1.1", text: "No\r\naction=DUNNO"),
        violation: "text contains a control character"),
    .init(
        label: "text with lf", action: .deferred(code: 451, status: "4.3.0", text: "a\nb"),
        violation: "text contains a control character"),
    .init(
        label: "text with nul", action: .deferred(code: 451, status: "4.3.0", text: "a\u{0}b"),
        violation: "text contains a control character"),
    .init(
        label: "text with delete", action: .deferred(code: 451, status: "4.3.0", text: "a\u{7F}"),
        violation: "text contains a control character"),
]

@Test(arguments: shapeCases)
func shapeViolationNamesProblem(_ testCase: ShapeCase) {
    #expect(testCase.action.shapeViolation == testCase.violation)
}

@Test(arguments: shapeCases.filter { $0.violation == nil })
func validActionHasPostfixShape(_ testCase: ShapeCase) {
    #expect(wireShapeProblem(testCase.action.encoded) == nil)
}

@Test func encodingEmptyTextStopsProcess() async {
    await #expect(processExitsWith: .failure) {
        _ = PolicyAction.reject(code: 550, status: "5.1.1", text: "").encoded
    }
}

@Test func encodingEmptyStatusStopsProcess() async {
    await #expect(processExitsWith: .failure) {
        _ = PolicyAction.reject(code: 550, status: "", text: "x").encoded
    }
}

@Test func encodingLineBreakStopsProcess() async {
    await #expect(processExitsWith: .failure) {
        var buffer: [UInt8] = []
        PolicyAction.deferred(code: 451, status: "4.3.0", text: "a\r").encode(into: &buffer)
    }
}
