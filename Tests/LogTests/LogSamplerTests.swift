// Tests of the decision-line sampler: exact counts for rates 0, 1, 0.5 and 0.1.
import Testing

import Log

private func picks(rate: Double, events: Int) -> [Bool] {
    let sampler = LogSampler(rate: rate)
    return (0..<events).map { _ in sampler.pick() }
}

@Test func samplerRateZeroPicksNone() {
    #expect(picks(rate: 0, events: 1000).filter { $0 }.count == 0)
}

@Test func samplerRateOnePicksAll() {
    #expect(picks(rate: 1, events: 1000).filter { $0 }.count == 1000)
}

@Test func samplerHalfPicksEverySecond() {
    let picked = picks(rate: 0.5, events: 100)

    #expect(picked.filter { $0 }.count == 50)
    #expect(Array(picked.prefix(4)) == [false, true, false, true])
}

@Test func samplerTenthPicksEveryTenth() {
    let picked = picks(rate: 0.1, events: 1000)

    #expect(picked.filter { $0 }.count == 100)
}

@Test func samplerClampsRate() {
    let sampler = LogSampler(rate: 3)

    #expect(sampler.rate == 1)
}

@Test func decisionLevelFollowsSampler() {
    let logger = Logger(fileDescriptor: -1)
    logger.decisionSampler.rate = 0.5

    let levels = (0..<4).map { _ in logger.decisionLevel() }

    #expect(levels == [.debug, .info, .debug, .info])
}
