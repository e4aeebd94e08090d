// Errors of the netstring decoder. Postfix's socketmap client never
// sends a malformed netstring, so any of these ends the connection.

/// A malformed or oversized netstring (`<length>:<payload>,`).
public enum NetstringError: Error, Equatable, Sendable {
    /// A byte other than a decimal digit or `:` in the length.
    case invalidLengthDigit(UInt8)
    /// The length has more digits than the longest allowed length, which only leading zeros can cause.
    case lengthTooLong(digits: Int)
    /// The length read so far exceeds `limit`. It is a lower bound: the decoder stops at the
    /// first digit that crosses the limit.
    case lengthExceedsLimit(length: Int, limit: Int)
    /// The byte after the payload is `found` instead of `,`.
    case missingTerminator(found: UInt8)
    /// The netstring starts with `:`.
    case emptyLength
}

extension NetstringError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .invalidLengthDigit(let byte): "netstring length contains byte \(byteDescription(byte))"
        case .lengthTooLong(let digits): "netstring length has \(digits) digits"
        case .lengthExceedsLimit(_, let limit): "netstring length exceeds the limit of \(limit) bytes"
        case .missingTerminator(let byte): "netstring ends with \(byteDescription(byte)) instead of ','"
        case .emptyLength: "netstring starts with ':' and has no length"
        }
    }
}

/// Shows a byte as its printable ASCII character in quotes, or in hex.
private func byteDescription(_ byte: UInt8) -> String {
    guard byte >= 0x21 && byte < 0x7F else { return "0x" + String(byte, radix: 16, uppercase: true) }
    return "'\(Character(Unicode.Scalar(byte)))'"
}
