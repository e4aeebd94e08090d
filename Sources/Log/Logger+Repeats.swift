// Rate-limited events and sampled decision lines of the Logger.
import Dispatch

extension Logger {
    /// Writes one event at `level` unless an event with the same text and `context` was written
    /// less than `repeats.window` seconds ago. Repeats in the window are counted, and one line
    /// with the event text, `context` and `suppressed=N` follows when the window ends.
    ///
    /// Put the context pair in `metadata` too, so that the first line carries it.
    public func log(
        _ level: LogLevel, _ event: String, limitedBy context: LogContext,
        _ metadata: @autoclosure () -> [(LogKey, String)] = []
    ) {
        guard isEnabled(level) else { return }
        startFlushTimerOnce()
        let decision = repeats.record(LogRepeatLimiter.Group(event: event, context: context), level: level)
        for summary in decision.closed {
            writeSummary(summary)
        }
        guard decision.write else { return }
        emit(level, event, metadata())
    }

    /// Writes the summary lines of the rate-limit windows that have ended.
    public func flushRepeats() {
        for summary in repeats.expire() {
            writeSummary(summary)
        }
    }

    /// Returns the level for one per-request decision line: info for the share of decisions that
    /// `decisionSampler` picks (`log.decision_sample_rate`), debug for the rest.
    public func decisionLevel() -> LogLevel {
        decisionSampler.pick() ? .info : .debug
    }

    private func writeSummary(_ summary: LogRepeatLimiter.Summary) {
        guard isEnabled(summary.level) else { return }
        let context = summary.group.context
        let metadata = [(context.key, context.value), (LogKey.suppressed, String(summary.suppressed))]
        emit(summary.level, summary.group.event, metadata)
    }

    private func startFlushTimerOnce() {
        guard flushesRepeats, !flushStarted.load(ordering: .relaxed),
            flushStarted.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
        else { return }
        scheduleFlush()
    }

    private func scheduleFlush() {
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) { [weak self] in
            guard let self else { return }
            self.flushRepeats()
            self.scheduleFlush()
        }
    }
}
