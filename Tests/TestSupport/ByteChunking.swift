// Ways to cut a byte stream into chunks, for tests that feed incremental
// decoders as a socket would: at every offset, at random sizes, byte by byte.

/// A small deterministic generator (SplitMix64), so that random chunkings repeat run to run.
package struct SplitMix64: RandomNumberGenerator {
    package var state: UInt64

    package init(state: UInt64) {
        self.state = state
    }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Splits `bytes` into two chunks at every offset, the empty ends included.
package func everySplit(_ bytes: [UInt8]) -> [[ArraySlice<UInt8>]] {
    (0...bytes.count).map { cut in [bytes[..<cut], bytes[cut...]] }
}

/// Splits `bytes` into chunks of 1...maxChunk bytes, with an empty chunk now and then.
package func randomChunks(_ bytes: [UInt8], maxChunk: Int, using generator: inout SplitMix64) -> [ArraySlice<UInt8>] {
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
package func byteByByte(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
    bytes.indices.map { bytes[$0...$0] }
}
