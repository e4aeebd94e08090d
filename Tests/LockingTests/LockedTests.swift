// Locked under concurrent use: no update is lost, a thrown error passes through
// with the lock released, and the body's result is returned.

import Foundation
import Locking
import Testing

private struct LockTestError: Error, Equatable {}

@Test func lockedKeepsEveryConcurrentIncrement() {
    let counter = Locked(0)
    let threads = 4
    let rounds = 10_000
    let done = DispatchGroup()
    for _ in 0..<threads {
        done.enter()
        Thread {
            for _ in 0..<rounds { counter.withLock { $0 += 1 } }
            done.leave()
        }.start()
    }
    done.wait()
    #expect(counter.withLock { $0 } == threads * rounds)
}

@Test func lockedReleasesLockAfterThrow() {
    let value = Locked([1, 2])
    #expect(throws: LockTestError()) {
        try value.withLock { (_: inout [Int]) throws(LockTestError) in throw LockTestError() }
    }
    #expect(value.withLock { $0 } == [1, 2])
}

@Test func lockedReturnsBodyResult() {
    let names = Locked(["a": 1])
    let previous = names.withLock { $0.updateValue(2, forKey: "a") }
    #expect(previous == 1)
    #expect(names.withLock { $0["a"] } == 2)
}
