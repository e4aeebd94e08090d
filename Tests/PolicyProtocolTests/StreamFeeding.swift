// Helpers that play a connection to a decoder: bytes arrive in chunks, the
// decoder is called after each one, and consumed bytes are dropped from the
// front, as a server's read buffer would do.

@testable import PolicyProtocol
import TestSupport

/// What a connection saw: the requests decoded in order, the error that ended it, and bytes left over.
struct FeedResult: Equatable {
    var requests: [PolicyRequest] = []
    var error: PolicyParseError?
    /// Total bytes in the connection buffer when the error was thrown.
    var bufferedAtError: Int?
    var leftover: [UInt8] = []
}

/// Feeds `chunks` to one decoder as a connection would and collects what it returns.
func feed(_ chunks: [ArraySlice<UInt8>], limits: PolicyLimits) -> FeedResult {
    var decoder = PolicyRequestDecoder(limits: limits)
    return feed(chunks, into: &decoder)
}

func feed(_ chunks: [ArraySlice<UInt8>], into decoder: inout PolicyRequestDecoder) -> FeedResult {
    var result = FeedResult()
    var buffer: [UInt8] = []
    for chunk in chunks {
        buffer.append(contentsOf: chunk)
        drain: while true {
            let outcome = buffer.withUnsafeBytes { bytes in
                Result { () throws(PolicyParseError) in try decoder.next(in: bytes) }
            }
            switch outcome {
            case .success(let decoded?):
                result.requests.append(decoded.request)
                buffer.removeFirst(decoded.consumed)
            case .success(nil):
                break drain
            case .failure(let error):
                result.error = error
                result.bufferedAtError = buffer.count
                return result
            }
        }
    }
    result.leftover = buffer
    return result
}
