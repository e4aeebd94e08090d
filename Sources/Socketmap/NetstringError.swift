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
