// A thread that subscribes to the flush channel and hands each message to
// a handler, reconnecting with backoff when the connection drops. Messages
// published while it is disconnected are lost, so the handler receives
// `.resubscribed` after a loss and should then drop everything.
import Foundation
import Log
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Runs one subscriber thread per instance until `stop()`.
package final class RedisFlushSubscriber: Sendable {
    /// An event passed to the handler.
    package enum Event: Sendable, Equatable {
        /// A message published on the channel.
        case message(String)
        /// The subscription started again after a lost connection.
        case resubscribed
    }

    private let endpoint: RedisEndpoint
    private let channel: String
    private let maxReconnectDelay: Double
    private let logger: Logger
    private let handler: @Sendable (Event) -> Void
    private let stopped = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)
    /// True while subscribed, for tests and readiness.
    private let subscribed = Atomic<Bool>(false)

    package init(
        endpoint: RedisEndpoint, channel: String, maxReconnectDelay: Double, logger: Logger,
        handler: @escaping @Sendable (Event) -> Void
    ) {
        self.endpoint = endpoint
        self.channel = channel
        self.maxReconnectDelay = max(0.05, maxReconnectDelay)
        self.logger = logger
        self.handler = handler
    }

    package var isSubscribed: Bool { subscribed.load(ordering: .acquiring) }

    /// Starts the thread.
    package func start() {
        let thread = Thread { [self] in run() }
        thread.name = "redis-flush"
        thread.start()
    }

    /// Asks the thread to end; it notices within half a second.
    package func stop() {
        stopped.store(true, ordering: .releasing)
        for _ in 0..<200 where running.load(ordering: .acquiring) {
            usleep(5000)
        }
    }

    private func run() {
        running.store(true, ordering: .releasing)
        defer { running.store(false, ordering: .releasing) }
        var failures = 0
        var everSubscribed = false
        while !stopped.load(ordering: .acquiring) {
            do throws(RedisError) {
                let connection = try RedisConnection(endpoint)
                try connection.send(["SUBSCRIBE", channel])
                try listen(on: connection) {
                    if everSubscribed { handler(.resubscribed) }
                    if failures > 0 {
                        logger.log(.info, "redis flush channel subscribed again", limitedBy: LogContext(.key, channel),
                                   [(.key, channel)])
                    }
                    everSubscribed = true
                    failures = 0
                }
            } catch {
                subscribed.store(false, ordering: .releasing)
                failures += 1
                if failures == 1 {
                    // Rate-limited too, because a subscription that breaks right after each reconnect
                    // starts a new outage every time.
                    let address = "\(endpoint.host):\(endpoint.port)"
                    logger.log(.warning, "redis flush subscription lost; reconnecting",
                               limitedBy: LogContext(.address, address),
                               [(.address, address), (.error, error.description)])
                }
                let delay = min(maxReconnectDelay, 0.05 * Double(1 << min(failures - 1, 16)))
                sleepUnlessStopped(delay * Double.random(in: 0.8...1.2))
            }
        }
        subscribed.store(false, ordering: .releasing)
    }

    /// Reads replies until stopped or the connection fails.
    private func listen(on connection: RedisConnection, onSubscribed: () -> Void) throws(RedisError) {
        var readSocket = false
        while !stopped.load(ordering: .acquiring) {
            if let reply = try connection.bufferedReply(readSocket: readSocket) {
                readSocket = false
                guard case .array(let parts) = reply, parts.count == 3, let kind = parts[0].text else { continue }
                if kind == "subscribe" {
                    subscribed.store(true, ordering: .releasing)
                    onSubscribed()
                } else if kind == "message", let text = parts[2].text {
                    handler(.message(text))
                }
                continue
            }
            var poller = pollfd(fd: connection.fileDescriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 500)
            if ready < 0 && errno != EINTR { throw .io(reason: String(cString: strerror(errno))) }
            readSocket = ready > 0
        }
    }

    private func sleepUnlessStopped(_ seconds: Double) {
        var left = seconds
        while left > 0 && !stopped.load(ordering: .acquiring) {
            usleep(UInt32(min(left, 0.05) * 1_000_000))
            left -= 0.05
        }
    }
}
