// Incremental decoder of netstrings, the framing of Postfix's socketmap
// protocol (socketmap_table(5)): `<length>:<payload>,` with a decimal length.
// The length is checked against the limit digit by digit, so an oversized
// request fails before its payload is buffered.

/// Decodes netstrings from a growing byte buffer.
///
/// The caller keeps the bytes it has read but not yet consumed, and passes them to
/// ``next(in:)`` after each read. The decoder remembers the length digits it has read,
/// so no byte of the length is read twice. After it returns a payload, or throws, it
/// starts over for the next netstring.
///
/// Leading zeros in the length are accepted, as Postfix's own reader accepts them, but the
/// length may have no more digits than `maxLength` written in decimal.
public struct NetstringDecoder: Sendable {
    /// Largest payload accepted, in bytes.
    public let maxLength: Int
    private let maxDigits: Int

    /// Bytes of the length read so far, the `:` excluded.
    private var digits = 0
    private var length = 0
    private var lengthComplete = false

    /// Creates a decoder that accepts payloads of up to `maxLength` bytes.
    public init(maxLength: Int) {
        precondition(maxLength >= 0 && maxLength <= 1 << 40, "maxLength must be in 0...2^40")
        self.maxLength = maxLength
        self.maxDigits = String(maxLength).utf8.count
    }

    /// Decodes the next netstring from `buffer`.
    ///
    /// - Parameter buffer: the bytes not yet consumed, starting at the first one. Between calls the
    ///   caller may append bytes, but must not change or drop bytes it has passed before, except the
    ///   `consumed` bytes of a returned netstring.
    /// - Returns: the payload's byte range within `buffer` and the bytes the netstring used,
    ///   terminator included, or nil when more bytes are needed.
    /// - Throws: `NetstringError` at the first byte that breaks the format or the limit.
    public mutating func next(
        in buffer: UnsafeRawBufferPointer
    ) throws(NetstringError) -> (payload: Range<Int>, consumed: Int)? {
        do {
            return try decode(buffer)
        } catch {
            reset()
            throw error
        }
    }

    /// Forgets a partly decoded netstring.
    public mutating func reset() {
        digits = 0
        length = 0
        lengthComplete = false
    }

    private mutating func decode(
        _ buffer: UnsafeRawBufferPointer
    ) throws(NetstringError) -> (payload: Range<Int>, consumed: Int)? {
        if !lengthComplete {
            try readLength(buffer)
            if !lengthComplete { return nil }
        }

        let payloadStart = digits + 1
        let payloadEnd = payloadStart + length
        guard buffer.count > payloadEnd else { return nil }
        let terminator = buffer[payloadEnd]
        if terminator != UInt8(ascii: ",") { throw .missingTerminator(found: terminator) }
        reset()
        return (payloadStart..<payloadEnd, payloadEnd + 1)
    }

    /// Reads length digits from where the last call stopped, up to the `:` or the end of `buffer`.
    private mutating func readLength(_ buffer: UnsafeRawBufferPointer) throws(NetstringError) {
        precondition(buffer.count >= digits, "the buffer lost bytes that the decoder had read")
        while digits < buffer.count {
            let byte = buffer[digits]
            if byte == UInt8(ascii: ":") {
                if digits == 0 { throw .emptyLength }
                lengthComplete = true
                return
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { throw .invalidLengthDigit(byte) }
            length = length * 10 + Int(byte - UInt8(ascii: "0"))
            digits += 1
            if length > maxLength { throw .lengthExceedsLimit(length: length, limit: maxLength) }
            if digits > maxDigits { throw .lengthTooLong(digits: digits) }
        }
    }
}
