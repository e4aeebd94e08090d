// A bounded pool of Redis connections for worker threads. After a failure
// the pool backs off exponentially (with jitter) before it connects again,
// so that while Redis is down a lookup costs no connect timeout. An outage
// is logged once when it starts and once when it ends, with its error count.
import Log

#if canImport(Glibc)
    import Glibc
#endif

/// Hands out at most `size` connections, one thread per connection at a time.
package final class RedisPool: @unchecked Sendable {
    // @unchecked: every stored `var` is read and written with `lock` held.
    package let endpoint: RedisEndpoint
    private let size: Int
    private let maxReconnectDelay: Double
    private let logger: Logger
    private let lock = ConditionLock()
    private var idle: [RedisConnection] = []
    private var open = 0
    /// Monotonic nanoseconds before which no connection is tried.
    private var retryAt: UInt64 = 0
    private var consecutiveFailures = 0
    private var outageErrors = 0
    private var errorTotal = 0
    private var closed = false

    package init(endpoint: RedisEndpoint, size: Int, maxReconnectDelay: Double, logger: Logger) {
        self.endpoint = endpoint
        self.size = max(1, size)
        self.maxReconnectDelay = max(0.01, maxReconnectDelay)
        self.logger = logger
    }

    /// Failed calls since start, backoff refusals included.
    package var errorCount: Int { lock.withLock { errorTotal } }

    /// Whether the last call failed and no call has succeeded since.
    package var isDown: Bool { lock.withLock { consecutiveFailures > 0 } }

    /// Runs `body` with a connection. A connection whose call failed is closed.
    /// - Throws: the error of `body`, or `.backingOff`, `.poolExhausted` or a
    ///   connect error before `body` runs.
    package func withConnection<T>(_ body: (RedisConnection) throws(RedisError) -> T) throws(RedisError) -> T {
        let connection = try checkOut()
        do {
            let value = try body(connection)
            checkIn(connection, failure: nil)
            return value
        } catch {
            checkIn(connection, failure: error)
            throw error
        }
    }

    /// Sends one command on a pooled connection.
    package func command(_ arguments: [String]) throws(RedisError) -> RedisReply {
        try withConnection { connection throws(RedisError) in try connection.command(arguments) }
    }

    /// Closes idle connections and refuses further calls.
    package func close() {
        lock.withLock {
            closed = true
            idle.removeAll()
            lock.broadcast()
        }
    }

    private func checkOut() throws(RedisError) -> RedisConnection {
        lock.lock()
        let deadline = monotonicNow() + UInt64(endpoint.commandTimeout * 1e9)
        while true {
            if closed {
                lock.unlock()
                throw .io(reason: "pool closed")
            }
            if let connection = idle.popLast() {
                lock.unlock()
                return connection
            }
            if open < size { break }
            if !lock.wait(until: deadline) {
                errorTotal += 1
                lock.unlock()
                throw .poolExhausted
            }
        }
        if monotonicNow() < retryAt {
            errorTotal += 1
            outageErrors += 1
            lock.unlock()
            throw .backingOff
        }
        open += 1
        lock.unlock()

        do {
            return try RedisConnection(endpoint)
        } catch {
            lock.withLock {
                open -= 1
                recordFailure(error)
                lock.broadcast()
            }
            throw error
        }
    }

    private func checkIn(_ connection: RedisConnection, failure: RedisError?) {
        lock.withLock {
            if connection.isBroken || closed {
                open -= 1
            } else {
                idle.append(connection)
            }
            if let failure, connection.isBroken {
                recordFailure(failure)
            } else {
                if let failure { recordErrorReplyLocked(failure) }
                recordSuccess()
            }
            lock.broadcast()
        }
    }

    /// Called with the lock held.
    private func recordFailure(_ error: RedisError) {
        errorTotal += 1
        outageErrors += 1
        consecutiveFailures += 1
        let delay = min(maxReconnectDelay, 0.05 * Double(1 << min(consecutiveFailures - 1, 16)))
        retryAt = monotonicNow() + UInt64(delay * Double.random(in: 0.8...1.2) * 1e9)
        if consecutiveFailures == 1 {
            // Once per outage, and rate-limited as well, because a Redis that fails right after
            // each reconnect starts a new outage every time.
            let address = "\(endpoint.host):\(endpoint.port)"
            logger.log(.warning, "redis unavailable; identity lookups continue without the shared cache",
                       limitedBy: LogContext(.address, address), [(.address, address), (.error, error.description)])
        }
    }

    /// Counts and logs a failed call whose connection stays usable, such as an error reply or a
    /// reply of the wrong type that a caller found after the call returned.
    package func recordErrorReply(_ error: RedisError) {
        lock.withLock { recordErrorReplyLocked(error) }
    }

    /// Called with the lock held.
    private func recordErrorReplyLocked(_ error: RedisError) {
        errorTotal += 1
        // Grouped by the kind of failure, because the reply text varies from call to call. An
        // unexpected reply is not shown, because it can be a cached value.
        let kind: String
        switch error {
        case .rejected(let command, _): kind = "\(command) rejected"
        case .unexpectedReply: kind = "unexpected reply"
        default: kind = error.description
        }
        let text = if case .unexpectedReply = error { kind } else { String(error.description.prefix(200)) }
        logger.log(.warning, "redis command failed", limitedBy: LogContext(.reason, kind), [
            (.address, "\(endpoint.host):\(endpoint.port)"), (.reason, kind), (.error, text),
        ])
    }

    /// Called with the lock held.
    private func recordSuccess() {
        guard consecutiveFailures > 0 else { return }
        let address = "\(endpoint.host):\(endpoint.port)"
        logger.log(.info, "redis available again", limitedBy: LogContext(.address, address), [
            (.address, address), (.count, String(outageErrors)),
        ])
        consecutiveFailures = 0
        outageErrors = 0
        retryAt = 0
    }
}

/// Reads CLOCK_MONOTONIC in nanoseconds.
package func monotonicNow() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
