// Admission of accepted connections against the global and per-source
// connection limits, shared by every loop of a group. The global count is an
// atomic. The per-source counts are in a dictionary behind a mutex, which is
// taken only when a TCP connection is accepted or closed.
//
// NOTE: The per-source count uses the TCP peer address, so behind a load
// balancer that sends a PROXY header all clients count as the balancer.
import Log
import Synchronization
import Locking

/// Why a new connection was closed before it was read.
public enum AdmissionRejection: String, Sendable, CaseIterable {
    /// `server.max_connections` connections were open.
    case maxConnections = "max_connections"
    /// `server.max_connections_per_source` connections from the same IP address were open.
    case maxConnectionsPerSource = "max_connections_per_source"
}

/// The limits on open connections and the count of connections they rejected.
public final class ConnectionAdmission: Sendable {
    public let maxConnections: Int
    public let maxConnectionsPerSource: Int
    private let open = Atomic<Int>(0)
    private let openBySource = Locked<[[UInt8]: Int]>([:])
    private let rejectedGlobal = Atomic<UInt64>(0)
    private let rejectedPerSource = Atomic<UInt64>(0)

    public init(maxConnections: Int, maxConnectionsPerSource: Int) {
        precondition(maxConnections > 0 && maxConnectionsPerSource > 0, "connection limits must be positive")
        self.maxConnections = maxConnections
        self.maxConnectionsPerSource = maxConnectionsPerSource
    }

    /// Admitted connections that are still open, across all loops.
    public var openConnections: Int { open.load(ordering: .relaxed) }

    /// Connections closed at accept because of `reason`, since start.
    public func rejectedCount(_ reason: AdmissionRejection) -> UInt64 {
        switch reason {
        case .maxConnections: rejectedGlobal.load(ordering: .relaxed)
        case .maxConnectionsPerSource: rejectedPerSource.load(ordering: .relaxed)
        }
    }

    /// Counts a new connection from `source` (nil for a UNIX socket peer) if both limits allow it.
    /// A connection admitted here must be passed to ``release(source:)`` exactly once when it closes.
    func admit(source: [UInt8]?) -> AdmissionRejection? {
        if open.add(1, ordering: .relaxed).newValue > maxConnections {
            open.subtract(1, ordering: .relaxed)
            rejectedGlobal.add(1, ordering: .relaxed)
            return .maxConnections
        }
        guard let source else { return nil }
        let admitted = openBySource.withLock { counts in
            let current = counts[source, default: 0]
            guard current < maxConnectionsPerSource else { return false }
            counts[source] = current + 1
            return true
        }
        if !admitted {
            open.subtract(1, ordering: .relaxed)
            rejectedPerSource.add(1, ordering: .relaxed)
            return .maxConnectionsPerSource
        }
        return nil
    }

    /// Uncounts a connection that ``admit(source:)`` admitted.
    func release(source: [UInt8]?) {
        open.subtract(1, ordering: .relaxed)
        guard let source else { return }
        openBySource.withLock { counts in
            let remaining = counts[source, default: 1] - 1
            counts[source] = remaining > 0 ? remaining : nil
        }
    }

    /// Logs a rejection through the logger's repeat limiter, keyed by the reason: the first
    /// rejection of a window is written with its peer, and later ones are counted in a summary line.
    func logRejection(_ reason: AdmissionRejection, peer: String, listener: String, logger: Logger) {
        let limit = reason == .maxConnections ? maxConnections : maxConnectionsPerSource
        logger.log(.warning, "connection limit reached, closing new connection",
                   limitedBy: LogContext(.reason, reason.rawValue), [
            (.reason, reason.rawValue), (.limit, String(limit)), (.peer, peer), (.listener, listener),
        ])
    }
}
