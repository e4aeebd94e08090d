// Helpers that play a connection to a NetstringDecoder: bytes arrive in
// chunks, the decoder is called after each one, and consumed bytes are
// dropped from the front, as a server's read buffer would do.

import Socketmap

/// A small deterministic generator (SplitMix64), so that random chunkings repeat run to run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

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

/// Splits `bytes` into two chunks at every offset, the empty ends included.
func everySplit(_ bytes: [UInt8]) -> [[ArraySlice<UInt8>]] {
    (0...bytes.count).map { cut in [bytes[..<cut], bytes[cut...]] }
}

/// Splits `bytes` into chunks of 1...maxChunk bytes, with an empty chunk now and then.
func randomChunks(_ bytes: [UInt8], maxChunk: Int, using generator: inout SplitMix64) -> [ArraySlice<UInt8>] {
    var chunks: [ArraySlice<UInt8>] = []
    var offset = 0
    while offset < bytes.count {
        if Int.random(in: 0..<8, using: &generator) == 0 {
            chunks.append([])
        }
        let size = min(Int.random(in: 1...maxChunk, using: &generator), bytes.count - offset)
        chunks.append(bytes[offset..<(offset + size)])
        offset += size
    }
    return chunks
}

/// Splits `bytes` into one chunk per byte.
func byteByByte(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
    bytes.indices.map { bytes[$0...$0] }
}
