// The HTTP endpoint for /metrics, /healthz and /readyz. Most families are
// read at scrape time from the parts that already keep counts: the loops
// (open connections, admission rejections), each listener's TLS counters and
// certificates, the identity directory's stats and the store's status.
// Reading them happens on the endpoint's thread, never on a reactor thread.
//
// /readyz reports ready when a snapshot is loaded and younger than
// database.max_snapshot_age, the listeners accept connections, and the
// daemon is not draining.
import Config
import IdentityProvider
import Log
import Metrics
import Reactor
import Store
import Synchronization
import Locking

/// The state that readiness depends on besides the store; shared with the HTTP thread.
final class ReadinessState: Sendable {
    let listenersUp = Atomic<Bool>(false)
    let draining = Atomic<Bool>(false)
}

/// The loop group, set once it is built; the endpoint is built first, because the loops' sessions count into it.
final class LoopGroupReference: Sendable {
    private let group = Locked<ServerLoopGroup?>(nil)

    var value: ServerLoopGroup? {
        get { group.withLock { $0 } }
        set { group.withLock { $0 = newValue } }
    }
}

/// The metrics and health endpoint of one daemon.
public final class MetricsEndpoint: Sendable {
    public let registry: MetricsRegistry
    /// The counters that protocol sessions update.
    public let serverMetrics: ServerMetrics
    private let http: MetricsHTTPServer?
    private let state = ReadinessState()
    private let loops = LoopGroupReference()
    private let store: SnapshotStore
    private let maxSnapshotAge: Double
    private let logger: Logger
    /// The configured address, for the start log line.
    private let host: String

    /// Registers every family and binds the HTTP listener when `metrics.enabled` is true.
    ///
    /// An address that cannot be bound is logged as an error and leaves the daemon
    /// without the endpoint, because a busy metrics port must not stop mail from flowing.
    init(configuration: Configuration, store: SnapshotStore, identities: CachedIdentityDirectory,
         logger: Logger) {
        registry = MetricsRegistry()
        serverMetrics = ServerMetrics(registry: registry)
        self.store = store
        maxSnapshotAge = configuration.database.maxSnapshotAge
        self.logger = logger
        host = configuration.metrics.host
        Self.registerDaemonFamilies(registry, state: state, maxSnapshotAge: maxSnapshotAge)
        let loops = loops
        Self.registerConnectionFamilies(registry) { loops.value }
        Self.registerIdentityFamilies(registry, identities: identities)
        Self.registerStoreFamilies(registry, store: store)
        Self.registerLogFamilies(registry, logger: logger)
        guard configuration.metrics.enabled else {
            http = nil
            return
        }
        let state = state
        let maxSnapshotAge = maxSnapshotAge
        let routes = MetricsRoutes(registry: registry) {
            Self.notReadyReason(state: state, status: store.status, maxSnapshotAge: maxSnapshotAge)
        }
        do {
            http = try MetricsHTTPServer(
                host: configuration.metrics.host, port: configuration.metrics.port, routes: routes)
        } catch {
            logger.error("metrics endpoint not started", [
                (.address, configuration.metrics.listen), (.error, error.description),
            ])
            http = nil
        }
    }

    /// The bound port, or nil when the endpoint is turned off.
    public var port: UInt16? { http?.port }

    /// Marks the daemon as draining (or not); /readyz reports 503 while it drains.
    public func setDraining(_ draining: Bool) {
        state.draining.store(draining, ordering: .relaxed)
    }

    /// Gives the scrape-time families the loop group to read.
    func attach(_ group: ServerLoopGroup) {
        loops.value = group
    }

    /// Records whether the protocol listeners accept connections.
    func setListenersUp(_ up: Bool) {
        state.listenersUp.store(up, ordering: .relaxed)
    }

    /// The reason /readyz reports 503, or nil when ready.
    public var notReadyReason: String? {
        Self.notReadyReason(state: state, status: store.status, maxSnapshotAge: maxSnapshotAge)
    }

    /// Starts the HTTP thread.
    func start() {
        guard let http else { return }
        http.start()
        let address = host.contains(":") ? "[\(host)]:\(http.port)" : "\(host):\(http.port)"
        logger.info("metrics endpoint listening", [(.address, address)])
    }

    /// Stops the HTTP thread; a scrape in progress finishes first.
    func stop() {
        http?.stop()
    }

    static func notReadyReason(state: ReadinessState, status: StoreStatus, maxSnapshotAge: Double) -> String? {
        if state.draining.load(ordering: .relaxed) { return "draining" }
        if !state.listenersUp.load(ordering: .relaxed) { return "listeners not started" }
        guard let age = status.snapshotAge else {
            return "no database snapshot loaded" + (status.lastError.map { ": \($0)" } ?? "")
        }
        if age > maxSnapshotAge {
            return "database snapshot is \(Int(age)) s old, older than database.max_snapshot_age (\(Int(maxSnapshotAge)) s)"
        }
        return nil
    }
}
