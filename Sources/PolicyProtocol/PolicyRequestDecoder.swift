// Incremental decoder of Postfix policy delegation requests: `name=value`
// lines ended by one blank line (SMTPD_POLICY_README). It works on the
// caller's bytes in place, finds newlines with memchr, and builds strings
// only for the attributes in PolicyRequest, so unknown attributes cost no
// allocation. Limits are checked as bytes arrive.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Decodes policy requests from a growing byte buffer.
///
/// The caller keeps the bytes it has read but not yet consumed, and passes them
/// to ``next(in:)`` after each read. The decoder remembers how far it has
/// scanned, so a request that arrives one byte at a time is still scanned once.
/// After it returns a request, or throws, it starts over for the next request.
public struct PolicyRequestDecoder: Sendable {
    /// The limits checked while decoding.
    public let limits: PolicyLimits

    /// Bytes before this offset hold no newline that is still to be processed.
    private var scanOffset = 0
    /// Offset of the first byte of the current line.
    private var lineStart = 0
    /// Bit set of the known attributes seen in the current request.
    private var seenAttributes: UInt16 = 0
    private var partial = PolicyRequest()

    /// Total bytes handed to memchr since creation; tests read it to prove that nothing is scanned twice.
    internal private(set) var bytesScanned = 0

    /// Creates a decoder that enforces `limits`.
    public init(limits: PolicyLimits) {
        self.limits = limits
    }

    /// Decodes the next complete request from `buffer`.
    ///
    /// - Parameter buffer: the bytes not yet consumed, starting at the first one. Between calls the
    ///   caller may append bytes, but must not change or drop bytes it has passed before, except the
    ///   `consumed` bytes of a returned request.
    /// - Returns: the request and the number of bytes it used, closing blank line included,
    ///   or nil when the request is not complete yet.
    /// - Throws: `PolicyParseError` as soon as the bytes break a rule or a limit.
    public mutating func next(
        in buffer: UnsafeRawBufferPointer
    ) throws(PolicyParseError) -> (request: PolicyRequest, consumed: Int)? {
        precondition(buffer.count >= scanOffset, "the buffer lost bytes that the decoder had scanned")
        do {
            return try scan(buffer)
        } catch {
            reset()
            throw error
        }
    }

    /// Forgets a partly decoded request.
    public mutating func reset() {
        scanOffset = 0
        lineStart = 0
        seenAttributes = 0
        partial = PolicyRequest()
    }

    private mutating func scan(
        _ buffer: UnsafeRawBufferPointer
    ) throws(PolicyParseError) -> (request: PolicyRequest, consumed: Int)? {
        guard let base = buffer.baseAddress else { return nil }

        while true {
            // The newline that ends the current line must come before both bounds.
            let lineBound = lineStart + limits.maxLineLength + 1
            let windowEnd = min(buffer.count, lineBound, limits.maxRequestSize)
            guard scanOffset < windowEnd, let hit = memchr(base + scanOffset, 0x0A, windowEnd - scanOffset) else {
                bytesScanned += max(0, windowEnd - scanOffset)
                scanOffset = max(scanOffset, windowEnd)
                if windowEnd == lineBound { throw .lineTooLong(limit: limits.maxLineLength) }
                if windowEnd == limits.maxRequestSize { throw .requestTooLarge(limit: limits.maxRequestSize) }
                return nil
            }

            let newline = base.distance(to: UnsafeRawPointer(hit))
            bytesScanned += newline + 1 - scanOffset
            scanOffset = newline + 1
            let line = UnsafeRawBufferPointer(rebasing: buffer[lineStart..<newline])
            lineStart = newline + 1
            if try takeLine(line) {
                let request = partial
                reset()
                return (request, newline + 1)
            }
        }
    }

    /// Applies one line, newline excluded. Returns true when it was the closing blank line.
    private mutating func takeLine(_ rawLine: UnsafeRawBufferPointer) throws(PolicyParseError) -> Bool {
        var line = rawLine
        if line.last == 0x0D {
            line = UnsafeRawBufferPointer(rebasing: line.dropLast())
        }
        if line.isEmpty {
            if partial.attributeCount == 0 { throw .emptyRequest }
            return true
        }

        partial.attributeCount += 1
        let lineNumber = partial.attributeCount
        if lineNumber > limits.maxAttributes { throw .tooManyAttributes(limit: limits.maxAttributes) }
        if memchr(line.baseAddress!, 0, line.count) != nil { throw .nulByte(line: lineNumber) }
        guard let equals = memchr(line.baseAddress!, 0x3D, line.count) else {
            throw .missingEquals(line: lineNumber)
        }
        let nameLength = line.baseAddress!.distance(to: UnsafeRawPointer(equals))
        if nameLength == 0 { throw .emptyName(line: lineNumber) }

        let name = UnsafeRawBufferPointer(rebasing: line[..<nameLength])
        guard let attribute = KnownAttribute(name: name) else { return false }
        if seenAttributes & attribute.bit != 0 {
            throw .duplicateAttribute(name: attribute.wireName.description, line: lineNumber)
        }
        seenAttributes |= attribute.bit
        let value = String(decoding: UnsafeRawBufferPointer(rebasing: line[(nameLength + 1)...]), as: UTF8.self)
        store(value, for: attribute)
        return false
    }

    private mutating func store(_ value: String, for attribute: KnownAttribute) {
        switch attribute {
        case .request: partial.request = value
        case .protocolState: partial.protocolState = value
        case .sender: partial.sender = value
        case .recipient: partial.recipient = value
        case .saslMethod: partial.saslMethod = value
        case .saslUsername: partial.saslUsername = value
        case .clientAddress: partial.clientAddress = value
        case .queueID: partial.queueID = value
        }
    }
}

/// The attributes that PolicyRequest keeps, under their Postfix names.
private enum KnownAttribute: Int {
    case request, protocolState, sender, recipient, saslMethod, saslUsername, clientAddress, queueID

    var bit: UInt16 { 1 << UInt16(rawValue) }

    var wireName: StaticString {
        switch self {
        case .request: "request"
        case .protocolState: "protocol_state"
        case .sender: "sender"
        case .recipient: "recipient"
        case .saslMethod: "sasl_method"
        case .saslUsername: "sasl_username"
        case .clientAddress: "client_address"
        case .queueID: "queue_id"
        }
    }

    /// Matches a name byte for byte (Postfix names are lower case); nil for any other name.
    init?(name: UnsafeRawBufferPointer) {
        let found: KnownAttribute?
        switch name.count {
        case 6: found = Self.match(name, .sender)
        case 7: found = Self.match(name, .request)
        case 8: found = Self.match(name, .queueID)
        case 9: found = Self.match(name, .recipient)
        case 11: found = Self.match(name, .saslMethod)
        case 13: found = Self.match(name, .saslUsername)
        case 14: found = Self.match(name, .protocolState) ?? Self.match(name, .clientAddress)
        default: found = nil
        }
        guard let found else { return nil }
        self = found
    }

    /// Returns `candidate` when `name` has the same bytes as its wire name; the lengths are equal.
    private static func match(_ name: UnsafeRawBufferPointer, _ candidate: KnownAttribute) -> KnownAttribute? {
        memcmp(name.baseAddress!, candidate.wireName.utf8Start, name.count) == 0 ? candidate : nil
    }
}
