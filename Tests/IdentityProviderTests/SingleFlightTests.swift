import Foundation
import Model
import Synchronization
import Testing

@testable import IdentityProvider

@Suite struct SingleFlightTests {
    @Test func concurrentCallsShareOneRun() {
        let flights = SingleFlight<IdentityKey, IdentityAnswer>(waitLimitSeconds: 30)
        let runs = Atomic<Int>(0)
        let release = Atomic<Bool>(false)
        let answers = Collector<IdentityAnswer?>()
        let key = IdentityKey.username("alice")

        let threads = 8
        let waiters = Thread {
            _ = waitUntil { flights.waiterCount(for: key) == threads - 1 }
            release.store(true, ordering: .relaxed)
        }
        waiters.start()
        runOnThreads(threads) { _ in
            let answer = try? flights.run(key) { () throws(IdentityLookupError) -> IdentityAnswer in
                runs.add(1, ordering: .relaxed)
                _ = waitUntil { release.load(ordering: .relaxed) }
                return .notFound
            }
            answers.append(answer)
        }

        #expect(runs.load(ordering: .relaxed) == 1)
        #expect(answers.values.count == threads)
        #expect(answers.values.allSatisfy { $0 == .notFound })
        #expect(flights.waiterCount(for: key) == 0)
    }

    @Test func waitersShareTheError() {
        let flights = SingleFlight<IdentityKey, IdentityAnswer>(waitLimitSeconds: 30)
        let release = Atomic<Bool>(false)
        let errors = Collector<IdentityLookupError?>()
        let key = IdentityKey.email("x@example.com")

        let threads = 4
        Thread {
            _ = waitUntil { flights.waiterCount(for: key) == threads - 1 }
            release.store(true, ordering: .relaxed)
        }.start()
        runOnThreads(threads) { _ in
            do throws(IdentityLookupError) {
                _ = try flights.run(key) { () throws(IdentityLookupError) -> IdentityAnswer in
                    _ = waitUntil { release.load(ordering: .relaxed) }
                    throw .unavailable(reason: "provider down")
                }
                errors.append(nil)
            } catch {
                errors.append(error)
            }
        }
        #expect(errors.values.count == threads)
        #expect(errors.values.allSatisfy { $0 == .unavailable(reason: "provider down") })
    }

    @Test func laterCallRunsAgain() throws {
        let flights = SingleFlight<IdentityKey, IdentityAnswer>(waitLimitSeconds: 30)
        var runs = 0
        for _ in 0..<3 {
            _ = try flights.run(.username("bob")) { () throws(IdentityLookupError) -> IdentityAnswer in
                runs += 1
                return .notFound
            }
        }
        #expect(runs == 3)
    }
}
