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
