// A wrapper for credentials (client secret, access token) whose textual
// forms are a fixed mask, so that string interpolation or a debugger print
// cannot put the value into a log line.

/// A credential. `description` and `debugDescription` are always `***`;
/// read `value` only where the credential goes on the wire.
struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    static let mask = "***"

    let value: String

    init(_ value: String) {
        self.value = value
    }

    var description: String { Self.mask }
    var debugDescription: String { Self.mask }
}

extension Secret {
    /// Returns `url` with the `user:password@` part of its authority, if any, replaced by the mask,
    /// for log lines and error messages.
    static func redactingUserInfo(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard let at = authority.lastIndex(of: "@") else { return url }
        return String(url[..<schemeEnd.upperBound]) + mask + String(url[at...])
    }
}
