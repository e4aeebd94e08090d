import Locking
import Model
import Testing

@testable import IdentityProvider

@Suite struct IdentityCacheTests {
    let alice = IdentityAnswer.found(IdentityUser(username: "alice", email: MailAddress("alice@example.com")))

    @Test func lruEvictsLeastRecentlyUsed() {
        let cache = IdentityCache(maxEntries: 3, positiveTTL: 300, negativeTTL: 60, shardCount: 1)
        cache.store(.notFound, for: .email("a@example.com"))
        cache.store(.notFound, for: .email("b@example.com"))
        cache.store(.notFound, for: .email("c@example.com"))
        _ = cache.answer(for: .email("a@example.com"))
        cache.store(.notFound, for: .email("d@example.com"))

        #expect(cache.answer(for: .email("b@example.com")) == nil)
        #expect(cache.count == 3)
        #expect(
            cache.keysByRecency(inShardOf: .email("a@example.com")) == [
                .email("d@example.com"), .email("a@example.com"), .email("c@example.com"),
            ])
    }

    @Test func lruStoreReplacesExistingKey() {
        let cache = IdentityCache(maxEntries: 2, positiveTTL: 300, negativeTTL: 60, shardCount: 1)
        cache.store(.notFound, for: .username("alice"))
        cache.store(.notFound, for: .username("bob"))
        cache.store(alice, for: .username("alice"))
        cache.store(.notFound, for: .username("carol"))

        #expect(cache.answer(for: .username("alice")) == alice)
        #expect(cache.answer(for: .username("bob")) == nil)
        #expect(cache.count == 2)
    }

    @Test func lruStoreReusesFreedSlots() {
        var store = LRUStore<Int, String>(capacity: 2)
        store.set("one", for: 1, expiresAt: 100)
        store.set("two", for: 2, expiresAt: 100)
        store.removeValue(for: 1)
        store.set("three", for: 3, expiresAt: 100)
        store.set("four", for: 4, expiresAt: 100)

        #expect(store.keysByRecency == [4, 3])
        #expect(store.value(for: 2, now: 0) == nil)
        #expect(store.value(for: 3, now: 0) == "three")
        #expect(store.keysByRecency == [3, 4])
    }

    @Test func cacheBoundHoldsAcrossShards() {
        let cache = IdentityCache(maxEntries: 10, positiveTTL: 300, negativeTTL: 60, shardCount: 16)
        for index in 0..<200 {
            cache.store(.notFound, for: .email("user\(index)@example.com"))
        }
        #expect(cache.count <= 10)
        #expect(cache.count > 0)
    }

    @Test func zeroEntriesDisablesCache() {
        let cache = IdentityCache(maxEntries: 0, positiveTTL: 300, negativeTTL: 60)
        cache.store(alice, for: .username("alice"))
        #expect(cache.answer(for: .username("alice")) == nil)
        #expect(cache.count == 0)
    }

    @Test func positiveTTLExpiresFoundAnswer() {
        let clock = ManualClock()
        let cache = IdentityCache(maxEntries: 10, positiveTTL: 300, negativeTTL: 60, clock: clock.read)
        cache.store(alice, for: .username("alice"))
        clock.advance(seconds: 299.9)
        #expect(cache.answer(for: .username("alice")) == alice)
        clock.advance(seconds: 0.1)
        #expect(cache.answer(for: .username("alice")) == nil)
        #expect(cache.count == 0)
    }

    @Test func negativeTTLExpiresNotFoundAnswer() {
        let clock = ManualClock()
        let cache = IdentityCache(maxEntries: 10, positiveTTL: 300, negativeTTL: 60, clock: clock.read)
        cache.store(.notFound, for: .email("nobody@example.com"))
        clock.advance(seconds: 59)
        #expect(cache.answer(for: .email("nobody@example.com")) == .notFound)
        clock.advance(seconds: 1)
        #expect(cache.answer(for: .email("nobody@example.com")) == nil)
    }

    @Test func zeroNegativeTTLStoresNoMiss() {
        let cache = IdentityCache(maxEntries: 10, positiveTTL: 300, negativeTTL: 0)
        cache.store(.notFound, for: .email("nobody@example.com"))
        cache.store(alice, for: .email("alice@example.com"))
        #expect(cache.answer(for: .email("nobody@example.com")) == nil)
        #expect(cache.answer(for: .email("alice@example.com")) == alice)
    }

    @Test func storeAgainRestartsTTL() {
        let clock = ManualClock()
        let cache = IdentityCache(maxEntries: 10, positiveTTL: 300, negativeTTL: 60, clock: clock.read)
        cache.store(.notFound, for: .username("bob"))
        clock.advance(seconds: 50)
        cache.store(.notFound, for: .username("bob"))
        clock.advance(seconds: 50)
        #expect(cache.answer(for: .username("bob")) == .notFound)
    }

    @Test func removeAllEmptiesEveryShard() {
        let cache = IdentityCache(maxEntries: 100, positiveTTL: 300, negativeTTL: 60)
        for index in 0..<50 {
            cache.store(.notFound, for: .username("user\(index)"))
        }
        cache.removeAll()
        #expect(cache.count == 0)
        #expect(cache.answer(for: .username("user1")) == nil)
    }

    @Test func emailAndUsernameKeysAreDistinct() {
        let cache = IdentityCache(maxEntries: 10, positiveTTL: 300, negativeTTL: 60)
        cache.store(alice, for: .username("alice@example.com"))
        #expect(cache.answer(for: .email("alice@example.com")) == nil)
        #expect(cache.answer(for: .username("alice@example.com")) == alice)
    }
}

@Suite struct IdentityCacheReconfigureTests {
    @Test func shrinkKeepsMostRecentEntries() {
        let cache = IdentityCache(maxEntries: 4, positiveTTL: 300, negativeTTL: 60, shardCount: 1)
        for name in ["a", "b", "c", "d"] { cache.store(.notFound, for: .email("\(name)@example.com")) }
        _ = cache.answer(for: .email("a@example.com"))
        cache.reconfigure(maxEntries: 2, positiveTTL: 300, negativeTTL: 60, staleWindow: 0, jitter: 0)
        #expect(cache.maxEntries == 2)
        #expect(cache.keysByRecency(inShardOf: .email("a@example.com"))
            == [.email("a@example.com"), .email("d@example.com")])
    }

    @Test func growAcceptsMoreEntries() {
        let cache = IdentityCache(maxEntries: 1, positiveTTL: 300, negativeTTL: 60, shardCount: 1)
        cache.reconfigure(maxEntries: 3, positiveTTL: 300, negativeTTL: 60, staleWindow: 0, jitter: 0)
        for name in ["a", "b", "c"] { cache.store(.notFound, for: .email("\(name)@example.com")) }
        #expect(cache.count == 3)
    }

    @Test func newTTLAppliesToLaterStores() {
        let now = Locked<UInt64>(0)
        let cache = IdentityCache(
            maxEntries: 4, positiveTTL: 300, negativeTTL: 60, shardCount: 1, clock: { now.withLock { $0 } })
        cache.reconfigure(maxEntries: 4, positiveTTL: 300, negativeTTL: 1, staleWindow: 0, jitter: 0)
        cache.store(.notFound, for: .email("a@example.com"))
        now.withLock { $0 = 2_000_000_000 }
        #expect(cache.answer(for: .email("a@example.com")) == nil)
    }

    @Test func zeroBoundStoresNothing() {
        let cache = IdentityCache(maxEntries: 2, positiveTTL: 300, negativeTTL: 60, shardCount: 1)
        cache.store(.notFound, for: .email("a@example.com"))
        cache.reconfigure(maxEntries: 0, positiveTTL: 300, negativeTTL: 60, staleWindow: 0, jitter: 0)
        cache.store(.notFound, for: .email("b@example.com"))
        #expect(cache.count == 0)
    }
}
