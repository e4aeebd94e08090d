// A fixed-capacity LRU map with per-entry expiry. Nodes live in one array
// and link to each other by index, so get, put and remove are O(1) and the
// store allocates nothing once it is full.

/// A least-recently-used map of at most `capacity` entries. Not thread-safe:
/// `IdentityCache` guards each store with a mutex.
struct LRUStore<Key: Hashable, Value> {
    fileprivate struct Node {
        var key: Key
        var value: Value
        /// Monotonic nanoseconds after which the entry is stale.
        var expiresAt: UInt64
        var newer: Int
        var older: Int
    }

    private static var none: Int { -1 }

    private(set) var capacity: Int
    private var nodes: [Node] = []
    private var slots: [Key: Int] = [:]
    private var freeSlots: [Int] = []
    /// Most and least recently used nodes, or `none` when empty.
    private var newest = LRUStore.none
    private var oldest = LRUStore.none

    init(capacity: Int) {
        self.capacity = max(0, capacity)
        slots.reserveCapacity(self.capacity)
    }

    var count: Int { slots.count }

    /// Returns the value for `key` and marks it most recently used; removes
    /// it and returns nil when it expired at or before `now`.
    mutating func value(for key: Key, now: UInt64) -> Value? {
        guard let slot = slots[key] else { return nil }
        guard now < nodes[slot].expiresAt else {
            remove(slot: slot)
            return nil
        }
        moveToNewest(slot)
        return nodes[slot].value
    }

    /// Stores `value` as most recently used, evicting the least recently
    /// used entry when the store is full.
    mutating func set(_ value: Value, for key: Key, expiresAt: UInt64) {
        guard capacity > 0 else { return }
        if let slot = slots[key] {
            nodes[slot].value = value
            nodes[slot].expiresAt = expiresAt
            moveToNewest(slot)
            return
        }
        if slots.count >= capacity {
            remove(slot: oldest)
        }
        let node = Node(key: key, value: value, expiresAt: expiresAt, newer: Self.none, older: Self.none)
        let slot: Int
        if let free = freeSlots.popLast() {
            nodes[free] = node
            slot = free
        } else {
            nodes.append(node)
            slot = nodes.count - 1
        }
        slots[key] = slot
        linkAsNewest(slot)
    }

    /// Removes `key`; returns whether it was present.
    @discardableResult
    mutating func removeValue(for key: Key) -> Bool {
        guard let slot = slots[key] else { return false }
        remove(slot: slot)
        return true
    }

    mutating func removeAll() {
        nodes.removeAll(keepingCapacity: true)
        slots.removeAll(keepingCapacity: true)
        freeSlots.removeAll(keepingCapacity: true)
        newest = Self.none
        oldest = Self.none
    }

    /// Changes the bound to `newCapacity`, keeping the most recently used entries
    /// that fit. The store is rebuilt, so a smaller bound also gives its memory back.
    mutating func resize(to newCapacity: Int) {
        let newCapacity = max(0, newCapacity)
        guard newCapacity != capacity else { return }
        var kept: [Node] = []
        kept.reserveCapacity(min(count, newCapacity))
        var slot = newest
        while slot != Self.none, kept.count < newCapacity {
            kept.append(nodes[slot])
            slot = nodes[slot].older
        }
        self = LRUStore(capacity: newCapacity)
        for node in kept.reversed() {
            set(node.value, for: node.key, expiresAt: node.expiresAt)
        }
    }

    /// Keys from most to least recently used.
    var keysByRecency: [Key] {
        var keys: [Key] = []
        var slot = newest
        while slot != Self.none {
            keys.append(nodes[slot].key)
            slot = nodes[slot].older
        }
        return keys
    }

    private mutating func remove(slot: Int) {
        unlink(slot)
        slots[nodes[slot].key] = nil
        freeSlots.append(slot)
    }

    private mutating func moveToNewest(_ slot: Int) {
        guard slot != newest else { return }
        unlink(slot)
        linkAsNewest(slot)
    }

    private mutating func linkAsNewest(_ slot: Int) {
        nodes[slot].older = newest
        nodes[slot].newer = Self.none
        if newest != Self.none { nodes[newest].newer = slot }
        newest = slot
        if oldest == Self.none { oldest = slot }
    }

    private mutating func unlink(_ slot: Int) {
        let newer = nodes[slot].newer
        let older = nodes[slot].older
        if newer != Self.none { nodes[newer].older = older } else { newest = older }
        if older != Self.none { nodes[older].newer = newer } else { oldest = newer }
        nodes[slot].newer = Self.none
        nodes[slot].older = Self.none
    }
}

extension LRUStore: Sendable where Key: Sendable, Value: Sendable {}

extension LRUStore.Node: Sendable where Key: Sendable, Value: Sendable {}
