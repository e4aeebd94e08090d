// Tests of rate-limited log events: one line per group and window, then one
// summary line with the exact number of events held back.
import Testing

import Log

private let failure = "TLS handshake failed"

/// Logs `count` handshake failures with one reason, each from its own peer.
private func flood(_ log: CapturedLog, count: Int, reason: String = "certificate revoked") {
    for index in 0..<count {
        log.logger.log(.warning, failure, limitedBy: LogContext(.reason, reason), [
            (.peer, "127.0.0.1:\(20000 + index)"), (.reason, reason),
        ])
    }
}

@Test func floodWritesOneLineThenSummary() throws {
    let clock = ManualClock()
    let log = try CapturedLog(clock: clock)

    flood(log, count: 50)
    let during = log.lines()
    clock.advance(by: 10)
    log.logger.flushRepeats()
    let after = log.lines()

    #expect(during == ["level=warning event=\"TLS handshake failed\" peer=127.0.0.1:20000 reason=\"certificate revoked\""])
    #expect(after == ["level=warning event=\"TLS handshake failed\" reason=\"certificate revoked\" suppressed=49"])
}

@Test func floodSummaryBeforeNextWindowLine() throws {
    let clock = ManualClock()
    let log = try CapturedLog(clock: clock)

    flood(log, count: 50)
    clock.advance(by: 12)
    flood(log, count: 1)
    let lines = log.lines()

    #expect(lines.count == 3)
    #expect(lines.dropFirst().first == "level=warning event=\"TLS handshake failed\" reason=\"certificate revoked\" suppressed=49")
    #expect(lines.last == "level=warning event=\"TLS handshake failed\" peer=127.0.0.1:20000 reason=\"certificate revoked\"")
}

@Test func repeatWithinWindowStaysCounted() throws {
    let clock = ManualClock()
    let log = try CapturedLog(clock: clock)

    flood(log, count: 2)
    clock.advance(by: 9.9)
    log.logger.flushRepeats()
    let beforeEnd = log.lines()
    clock.advance(by: 0.1)
    log.logger.flushRepeats()
    let atEnd = log.lines()

    #expect(beforeEnd.count == 1)
    #expect(atEnd == ["level=warning event=\"TLS handshake failed\" reason=\"certificate revoked\" suppressed=1"])
}

@Test func singleEventGetsNoSummary() throws {
    let clock = ManualClock()
    let log = try CapturedLog(clock: clock)

    flood(log, count: 1)
    clock.advance(by: 30)
    log.logger.flushRepeats()
    flood(log, count: 1)

    #expect(log.lines().count == 2)
    #expect(log.logger.repeats.groupCount == 1)
}

@Test func reasonsAreLimitedSeparately() throws {
    let clock = ManualClock()
    let log = try CapturedLog(clock: clock)

    flood(log, count: 3, reason: "certificate revoked")
    flood(log, count: 3, reason: "certificate has expired")
    clock.advance(by: 10)
    log.logger.flushRepeats()
    let lines = log.lines()

    #expect(lines.count == 4)
    #expect(lines.filter { $0.hasSuffix("suppressed=2") }.count == 2)
}

@Test func groupBoundSharesOtherGroup() throws {
    let clock = ManualClock()
    let log = try CapturedLog(maxGroups: 2, clock: clock)

    flood(log, count: 1, reason: "a")
    flood(log, count: 1, reason: "b")
    flood(log, count: 1, reason: "c")
    flood(log, count: 1, reason: "d")
    clock.advance(by: 10)
    log.logger.flushRepeats()
    let lines = log.lines()

    #expect(lines.count == 4)
    #expect(lines.last == "level=warning event=\"TLS handshake failed\" reason=(other) suppressed=1")
    #expect(log.logger.repeats.groupCount == 0)
}

@Test func disabledLevelCountsNothing() throws {
    let clock = ManualClock()
    let log = try CapturedLog(clock: clock)
    log.logger.level = .error

    flood(log, count: 5)
    clock.advance(by: 10)
    log.logger.flushRepeats()

    #expect(log.lines() == [])
    #expect(log.logger.repeats.groupCount == 0)
}

@Test func limiterDecisionReportsClosedWindow() {
    let clock = ManualClock()
    let limiter = LogRepeatLimiter(window: 5, clock: { clock.now() })
    let group = LogRepeatLimiter.Group(event: "redis command failed", context: LogContext(.address, "127.0.0.1:6379"))

    let first = limiter.record(group, level: .error)
    let second = limiter.record(group, level: .error)
    clock.advance(by: 5)
    let third = limiter.record(group, level: .error)

    #expect(first == .init(write: true, closed: []))
    #expect(second == .init(write: false, closed: []))
    #expect(third == .init(write: true, closed: [.init(group: group, level: .error, suppressed: 1)]))
}
