// Errors of the policy request decoder. Any of these ends the
// connection: Postfix never sends such a request, so the peer is broken or
// is not Postfix.

/// A malformed or oversized policy delegation request.
///
/// Line numbers count the lines of one request from 1.
public enum PolicyParseError: Error, Equatable, Sendable {
    /// A line grew past `limit` bytes without a newline.
    case lineTooLong(limit: Int)
    /// The request has more than `limit` attribute lines.
    case tooManyAttributes(limit: Int)
    /// The request grew past `limit` bytes without its closing blank line.
    case requestTooLarge(limit: Int)
    /// A line has no `=` between name and value.
    case missingEquals(line: Int)
    /// A line starts with `=`.
    case emptyName(line: Int)
    /// A line contains a NUL byte.
    case nulByte(line: Int)
    /// An attribute that the resolver reads appears twice, so its value would be ambiguous.
    case duplicateAttribute(name: String, line: Int)
    /// A blank line arrived before any attribute.
    case emptyRequest
}

extension PolicyParseError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .lineTooLong(let limit): "line longer than \(limit) bytes"
        case .tooManyAttributes(let limit): "more than \(limit) attributes"
        case .requestTooLarge(let limit): "request larger than \(limit) bytes"
        case .missingEquals(let line): "line \(line) has no '=' between name and value"
        case .emptyName(let line): "line \(line) has an empty attribute name"
        case .nulByte(let line): "line \(line) contains a NUL byte"
        case .duplicateAttribute(let name, let line): "attribute \(name) repeated on line \(line)"
        case .emptyRequest: "blank line before any attribute"
        }
    }
}
