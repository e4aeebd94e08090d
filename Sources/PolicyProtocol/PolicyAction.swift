// Policy replies and the one place their wire form is built. Postfix reads
// `action=<access(5) action>` and a blank line. Several malformed replies let
// mail through (Postfix 3.7.11): a code without text (`action=550`) is an
// all-digit result that permits, `action=` with no value permits with a
// warning, and `\r\n` line ends stall the client until its 100 s timeout.
// So every reject or defer must be a whole `NXX X.Y.Z text` line without CR,
// and a violation is a programming error that stops the process.

/// The action the policy service sends Postfix for one request.
public enum PolicyAction: Sendable, Hashable {
    /// Let later restrictions decide (`action=DUNNO`).
    case dunno
    /// Reject permanently: a 5xx code, an enhanced status code of class 5, and a text.
    case reject(code: Int, status: String, text: String)
    /// Defer: a 4xx code, an enhanced status code of class 4, and a text.
    case deferred(code: Int, status: String, text: String)

    /// `550 5.1.1 No such user`
    public static let noSuchUser = PolicyAction.reject(code: 550, status: "5.1.1", text: "No such user")
    /// `550 5.7.1 Recipient domain not local`
    public static let recipientDomainNotLocal = PolicyAction.reject(
        code: 550, status: "5.7.1", text: "Recipient domain not local")
    /// `553 5.7.1 Sending from local domains requires authentication`
    public static let localSenderRequiresAuth = PolicyAction.reject(
        code: 553, status: "5.7.1", text: "Sending from local domains requires authentication")
    /// `553 5.7.1 Sender not owned by authenticated user`
    public static let senderNotOwned = PolicyAction.reject(
        code: 553, status: "5.7.1", text: "Sender not owned by authenticated user")
    /// `553 5.7.1 Unsupported authentication method`
    public static let unsupportedAuthMethod = PolicyAction.reject(
        code: 553, status: "5.7.1", text: "Unsupported authentication method")
    /// `451 4.3.0 Temporary authentication/lookup failure`
    public static let lookupFailure = PolicyAction.deferred(
        code: 451, status: "4.3.0", text: "Temporary authentication/lookup failure")
    /// `451 4.3.0 Temporary internal error`
    public static let internalError = PolicyAction.deferred(code: 451, status: "4.3.0", text: "Temporary internal error")
    /// `451 4.3.2 Service busy, try again later`
    public static let overloaded = PolicyAction.deferred(
        code: 451, status: "4.3.2", text: "Service busy, try again later")

    /// Every named reply above, for tests and documentation.
    public static let namedActions: [PolicyAction] = [
        .dunno, .noSuchUser, .recipientDomainNotLocal, .localSenderRequiresAuth, .senderNotOwned,
        .unsupportedAuthMethod, .lookupFailure, .internalError, .overloaded,
    ]

    /// The access(5) action: `DUNNO` or `550 5.1.1 No such user`.
    public var actionText: String {
        switch self {
        case .dunno: "DUNNO"
        case .reject(let code, let status, let text), .deferred(let code, let status, let text):
            "\(code) \(status) \(text)"
        }
    }

    /// The whole reply: `action=DUNNO\n\n` or `action=550 5.1.1 No such user\n\n`.
    ///
    /// Stops the process when the action is malformed (see ``shapeViolation``).
    public var encoded: [UInt8] {
        // The named replies are encoded (and checked) once; they are nearly all the traffic.
        if case .dunno = self { return Self.encodedDunno }
        if let bytes = Self.encodedNamedActions[self] { return bytes }
        var bytes: [UInt8] = []
        encode(into: &bytes)
        return bytes
    }

    private static let encodedDunno: [UInt8] = Array("action=DUNNO\n\n".utf8)

    private static let encodedNamedActions: [PolicyAction: [UInt8]] = Dictionary(
        uniqueKeysWithValues: namedActions.map { action in
            var bytes: [UInt8] = []
            action.encode(into: &bytes)
            return (action, bytes)
        })

    /// Appends the reply of ``encoded`` to `buffer`.
    public func encode(into buffer: inout [UInt8]) {
        if let violation = shapeViolation {
            preconditionFailure("malformed policy action \(self): \(violation)")
        }
        buffer.append(contentsOf: "action=".utf8)
        buffer.append(contentsOf: actionText.utf8)
        buffer.append(contentsOf: "\n\n".utf8)
    }

    /// The reason this action would be an unsafe reply, or nil when it is well formed.
    ///
    /// A reject needs a code in 500...599 and a defer one in 400...499. The status must have
    /// the form `d.ddd.ddd` (one digit, then one to three digits twice) and start with the
    /// code's first digit. The text must not be empty and must contain no control character
    /// (CR, LF and NUL included).
    public var shapeViolation: String? {
        switch self {
        case .dunno:
            return nil
        case .reject(let code, let status, let text):
            return Self.violation(code: code, allowedCodes: 500...599, status: status, text: text)
        case .deferred(let code, let status, let text):
            return Self.violation(code: code, allowedCodes: 400...499, status: status, text: text)
        }
    }

    private static func violation(
        code: Int, allowedCodes: ClosedRange<Int>, status: String, text: String
    ) -> String? {
        guard allowedCodes.contains(code) else {
            return "code \(code) is outside \(allowedCodes.lowerBound)-\(allowedCodes.upperBound)"
        }
        let parts = status.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        let digitsOnly = parts.allSatisfy { part in part.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
        guard parts.count == 3, digitsOnly, parts[0].count == 1, (1...3).contains(parts[1].count),
            (1...3).contains(parts[2].count)
        else {
            return "status \"\(status)\" is not of the form d.ddd.ddd"
        }
        guard Int(parts[0].first! - 0x30) == code / 100 else {
            return "status class \(status.prefix(1)) differs from the code's first digit"
        }
        if text.isEmpty {
            return "text is empty"
        }
        if text.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
            return "text contains a control character"
        }
        return nil
    }
}
