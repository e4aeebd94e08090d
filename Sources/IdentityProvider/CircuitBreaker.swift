// The circuit breaker around the identity provider. After a run of failed
// lookups it opens and lets no call through for a backoff that doubles on
// each failed probe (with ±20% jitter, so instances do not probe together),
// then lets one probe through (half-open). A successful probe closes it.
import Log
import Locking

/// The state of a circuit breaker.
public enum CircuitBreakerState: String, Sendable, Equatable {
    case closed
    case open
    case halfOpen = "half_open"
}

/// Decides whether a provider call may run. Thread-safe.
final class CircuitBreaker: Sendable {
    private struct State {
        var state = CircuitBreakerState.closed
        var consecutiveFailures = 0
        /// Failed probes since the breaker last closed; sets the backoff.
        var openings = 0
        var openUntil: UInt64 = 0
        var probeInFlight = false
    }

    private let failureThreshold: Int
    private let initialBackoff: Double
    private let maxBackoff: Double
    private let clock: MonotonicClock
    private let logger: Logger
    private let state = Locked(State())

    init(
        failureThreshold: Int, initialBackoff: Double, maxBackoff: Double, logger: Logger,
        clock: @escaping MonotonicClock = monotonicNanoseconds
    ) {
        self.failureThreshold = max(1, failureThreshold)
        self.initialBackoff = max(0.001, initialBackoff)
        self.maxBackoff = max(self.initialBackoff, maxBackoff)
        self.logger = logger
        self.clock = clock
    }

    var currentState: CircuitBreakerState { state.withLock { $0.state } }

    /// Returns whether a call may run now. In the half-open state only one
    /// caller, the probe, gets true until it reports its outcome.
    func allowCall() -> Bool {
        let now = clock()
        return state.withLock { state in
            switch state.state {
            case .closed:
                return true
            case .open:
                guard now >= state.openUntil else { return false }
                state.state = .halfOpen
                state.probeInFlight = true
                return true
            case .halfOpen:
                if state.probeInFlight { return false }
                state.probeInFlight = true
                return true
            }
        }
    }

    func recordSuccess() {
        let closedAgain = state.withLock { state -> Bool in
            let wasOpen = state.state != .closed
            state = State()
            return wasOpen
        }
        if closedAgain { logger.info("identity provider circuit breaker closed", [(.state, "closed")]) }
    }

    func recordFailure() {
        let now = clock()
        let opened = state.withLock { state -> Double? in
            state.consecutiveFailures += 1
            let probeFailed = state.state == .halfOpen
            guard probeFailed || (state.state == .closed && state.consecutiveFailures >= failureThreshold) else {
                return nil
            }
            let backoff = min(maxBackoff, initialBackoff * Double(1 << min(state.openings, 30)))
            let delay = backoff * Double.random(in: 0.8...1.2)
            state.openings += 1
            state.state = .open
            state.probeInFlight = false
            state.openUntil = now + nanoseconds(delay)
            return delay
        }
        if let opened {
            logger.info(
                "identity provider circuit breaker opened",
                [(.state, "open"), (.delay, String(Int(opened * 1000)))])
        }
    }
}
