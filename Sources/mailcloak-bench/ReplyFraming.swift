// Finds where one reply ends in the bytes a connection has received: a
// policy reply ends with a blank line, a socketmap reply is one netstring.

enum ReplyFraming {
    /// Largest reply accepted, in bytes: Postfix's socketmap reply limit plus the netstring framing.
    static let maxReplySize = 100_016

    enum Outcome {
        /// More bytes are needed.
        case incomplete
        /// A whole reply: `text` is the policy reply without its blank line, or the netstring payload.
        case reply(text: Range<Int>, consumed: Int)
        /// The bytes cannot start a valid reply.
        case malformed
    }

    static func find(_ wireProtocol: BenchOptions.WireProtocol, in buffer: UnsafeRawBufferPointer) -> Outcome {
        switch wireProtocol {
        case .policy: policyReply(buffer)
        case .socketmap: netstring(buffer)
        }
    }

    /// Finds the first blank line; the text is every line before it, without the last newline.
    private static func policyReply(_ buffer: UnsafeRawBufferPointer) -> Outcome {
        var lineStart = 0
        while let newline = buffer[lineStart...].firstIndex(of: 0x0A) {
            if newline == lineStart {
                return .reply(text: 0..<max(0, lineStart - 1), consumed: newline + 1)
            }
            lineStart = newline + 1
        }
        return buffer.count > maxReplySize ? .malformed : .incomplete
    }

    private static func netstring(_ buffer: UnsafeRawBufferPointer) -> Outcome {
        var length = 0
        var index = 0
        while index < buffer.count, buffer[index] != UInt8(ascii: ":") {
            let byte = buffer[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), index < 6 else { return .malformed }
            length = length * 10 + Int(byte - UInt8(ascii: "0"))
            index += 1
        }
        if index == buffer.count { return .incomplete }
        if index == 0 || length > maxReplySize { return .malformed }

        let payloadStart = index + 1
        let payloadEnd = payloadStart + length
        if buffer.count <= payloadEnd { return .incomplete }
        if buffer[payloadEnd] != UInt8(ascii: ",") { return .malformed }
        return .reply(text: payloadStart..<payloadEnd, consumed: payloadEnd + 1)
    }
}
