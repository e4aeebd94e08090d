// Helpers that play a connection to a NetstringDecoder: bytes arrive in
// chunks, the decoder is called after each one, and consumed bytes are
// dropped from the front, as a server's read buffer would do.

import Socketmap
import TestSupport

/// What a connection saw: the payloads decoded in order, the error that ended it, and bytes left over.
struct FeedResult: Equatable {
    var payloads: [[UInt8]] = []
    var error: NetstringError?
    /// Total bytes in the connection buffer when the error was thrown.
    var bufferedAtError: Int?
    var leftover: [UInt8] = []
}

/// Feeds `chunks` to one decoder as a connection would and collects the payloads.
func feed(_ chunks: [ArraySlice<UInt8>], maxLength: Int) -> FeedResult {
    var decoder = NetstringDecoder(maxLength: maxLength)
    var result = FeedResult()
    var buffer: [UInt8] = []
    for chunk in chunks {
        buffer.append(contentsOf: chunk)
        drain: while true {
            let outcome = buffer.withUnsafeBytes { bytes in
                Result { () throws(NetstringError) in try decoder.next(in: bytes) }
            }
            switch outcome {
            case .success(let decoded?):
                result.payloads.append(Array(buffer[decoded.payload]))
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
