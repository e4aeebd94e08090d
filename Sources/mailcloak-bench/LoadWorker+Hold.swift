// Hold mode (--hold N --hold-seconds S). Every connection connects, completes
// its TLS handshake with --tls, sends one request and reads the reply, and then
// stays open with no traffic. A thread begins its hold once all its connections
// are set up, or once no connect or reply has succeeded for twice the timeout
// plus 1 s. The hold lasts S seconds and ends with every connection closed.
// Connections that the server closes during the hold are counted, not reopened.

import Locking
#if canImport(Glibc)
import Glibc
#endif

/// The established connections of all threads. The last thread to begin its hold
/// prints one line for the whole run, which scripts wait for before they measure.
final class HoldProgress: Sendable {
    private let state = Locked<(threads: Int, established: Int)>((0, 0))
    let threadCount: Int
    let connectionCount: Int
    let seconds: Double

    init(threadCount: Int, connectionCount: Int, seconds: Double) {
        self.threadCount = threadCount
        self.connectionCount = connectionCount
        self.seconds = seconds
    }

    /// Adds one thread's established connections; the last thread prints the total.
    func threadBeganHold(established: Int) {
        let total: Int? = state.withLock { state in
            state.threads += 1
            state.established += established
            return state.threads == threadCount ? state.established : nil
        }
        guard let total else { return }
        let line = "holding \(total) of \(connectionCount) connections idle for \(formatSeconds(seconds)) s\n"
        _ = line.withCString { write(1, $0, strlen($0)) }
    }
}

extension LoadWorker {
    /// Keeps a connection open and idle after its first reply.
    func holdConnection(_ index: Int) {
        connections[index].phase = .held
        heldCount += 1
    }

    /// Begins the hold once every connection of this thread is held, or the setup has stalled.
    func advanceHold(_ now: UInt64) {
        guard holdStartedAt == nil else { return }
        guard heldCount == connections.count || result.stalledAt != nil else { return }
        holdStartedAt = now
        result.established = heldCount
        // Slots still connecting or retrying are given up, so that only established connections are held.
        for index in connections.indices where connections[index].phase != .held {
            closeConnection(index)
        }
        plan.holdProgress?.threadBeganHold(established: heldCount)
    }

    /// Counts the connections still open and closes them.
    func finishHold() {
        result.openAtEnd = heldCount
        for index in connections.indices where connections[index].phase == .held {
            closeConnection(index)
        }
        heldCount = 0
    }
}

/// Formats seconds with up to two decimals: 30, 0.5, 1.25.
func formatSeconds(_ value: Double) -> String {
    let hundredths = Int((value * 100).rounded())
    var text = "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    while text.hasSuffix("0") { text.removeLast() }
    if text.hasSuffix(".") { text.removeLast() }
    return text
}
