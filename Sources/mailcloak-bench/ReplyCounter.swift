// Counts replies by their text without allocating for replies already seen:
// a new text is copied once, later ones are compared in place.

struct ReplyCounter: Sendable {
    /// Distinct replies kept; later new texts are counted together as "(other replies)".
    static let maxDistinct = 1000

    private(set) var entries: [(reply: [UInt8], count: Int)] = []
    private(set) var other = 0
    private var lastHit = 0

    mutating func count(_ reply: UnsafeRawBufferPointer) {
        if lastHit < entries.count, entries[lastHit].reply.elementsEqual(reply) {
            entries[lastHit].count += 1
            return
        }
        if let index = entries.firstIndex(where: { $0.reply.elementsEqual(reply) }) {
            entries[index].count += 1
            lastHit = index
            return
        }
        if entries.count < Self.maxDistinct {
            entries.append((Array(reply), 1))
            lastHit = entries.count - 1
        } else {
            other += 1
        }
    }

    mutating func add(_ counter: ReplyCounter) {
        for entry in counter.entries {
            if let index = entries.firstIndex(where: { $0.reply == entry.reply }) {
                entries[index].count += entry.count
            } else if entries.count < Self.maxDistinct {
                entries.append(entry)
            } else {
                other += entry.count
            }
        }
        other += counter.other
    }
}
