// Start-up and shut-down of the daemon's parts, in dependency order:
// listeners first (a bad address fails the start before anything else runs),
// then the PostgreSQL snapshot store, the identity directory, the worker pool
// and the reactor threads. Stop runs the same list backwards.
import Config
import IdentityProvider
import Log
import Model
import Reactor
import Resolver
import Store
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension SnapshotStore: SnapshotProvider {}

/// The running daemon.
public final class MailcloakServer: Sendable {
    public let configuration: Configuration
    public let store: SnapshotStore
    public let identities: CachedIdentityDirectory
    let workers: WorkerPool
    let loops: ServerLoopGroup
    let logger: Logger
    let securityWatcher: SecurityWatcher
    /// The /metrics, /healthz and /readyz endpoint and the counters it publishes.
    public let metrics: MetricsEndpoint
    private let drainStarted = Atomic<Bool>(false)

    /// Binds every listener and builds every part; nothing runs until `start()`.
    public init(configuration: Configuration, logger: Logger = .shared) throws {
        self.configuration = configuration
        self.logger = logger
        var sockets: [ListeningSocket] = []
        for listener in configuration.listeners {
            sockets.append(try ListeningSocket.bind(listener, logger: logger))
        }
        store = SnapshotStore(config: configuration.database, logger: logger)
        identities = try makeIdentityDirectory(config: configuration.identity, logger: logger)
        metrics = MetricsEndpoint(configuration: configuration, store: store, identities: identities, logger: logger)
        workers = WorkerPool(
            threads: configuration.server.workerThreads, queueLimit: configuration.server.workerQueueLimit)
        let resolver = Resolver(
            config: configuration.policy, snapshots: store, identities: identities, logger: logger)
        let context = ServiceContext(
            resolver: resolver, identities: identities, workers: workers, server: configuration.server,
            logger: logger)
        let limits = ConnectionLimits(
            idleTimeout: configuration.server.idleTimeout, ioTimeout: configuration.server.ioTimeout,
            maxBufferedInput: max(configuration.server.policyMaxRequestSize, 64 * 1024) * 2,
            maxConnections: configuration.server.limits.maxConnections,
            maxConnectionsPerSource: configuration.server.limits.maxConnectionsPerSource)
        loops = try ServerLoopGroup(
            threadCount: configuration.server.reactorThreads, listeners: sockets, limits: limits,
            factory: MeteredSessionFactory(context: context, metrics: metrics.serverMetrics), logger: logger)
        metrics.attach(loops)
        securityWatcher = SecurityWatcher(sockets.compactMap(\.security))
    }

    /// The TLS and access state of each listener that has one, by listener name.
    public var listenerSecurity: [String: ListenerSecurity] {
        var result: [String: ListenerSecurity] = [:]
        for socket in loops.listeners {
            if let security = socket.security { result[socket.info.name] = security }
        }
        return result
    }

    /// Applies the TLS material and access rules of a reloaded configuration
    /// to the running listeners, matched by name. New handshakes use them;
    /// established connections keep what they started with. Returns the
    /// number of listeners whose reload failed (each is logged).
    @discardableResult
    public func reloadSecurity(_ newConfiguration: Configuration, reason: String = "SIGHUP") -> Int {
        var failures = 0
        let securities = listenerSecurity
        for listener in newConfiguration.listeners {
            guard let security = securities[listener.name] else {
                if listener.tls != nil || listener.acl != nil {
                    logger.warning("listener gained TLS or access rules; restart to apply", [(.listener, listener.name)])
                }
                continue
            }
            if (listener.tls == nil) != !security.isTLS {
                logger.warning("turning TLS on or off needs a restart", [(.listener, listener.name)])
                failures += 1
                continue
            }
            if security.reload(listener, reason: reason) != nil { failures += 1 }
        }
        return failures
    }

    /// The listeners as bound, with the real port where the configuration gave port 0.
    public var listeners: [ListenerInfo] { loops.listeners.map(\.info) }

    /// Starts the store, then the reactor threads. Requests that arrive before
    /// the first snapshot get `451 4.3.0 Temporary internal error` (policy) or `TEMP` (socketmap).
    public func start(snapshotWait: Double = 5) {
        metrics.start()
        store.start()
        if !store.waitForFirstSnapshot(timeout: snapshotWait) {
            logger.warning("serving without a database snapshot; requests get temporary failures until it loads")
        }
        loops.start()
        metrics.setListenersUp(true)
        securityWatcher.start()
        for listener in listeners {
            logger.info("listening", [(.listener, listener.name), (.address, listener.boundAddress),
                                      (.service, listener.services.map(\.rawValue).sorted().joined(separator: ","))])
        }
        logger.info("mailcloak started", [(.threads, String(loops.loops.count)),
                                          (.workers, String(workers.threadCount))])
        identities.start()
        checkIdentityProviderInBackground()
    }

    /// Checks the provider's token and the service account's roles once at start, off the
    /// reactor threads. A service account without `view-users` gets empty user lists from
    /// Keycloak, which would reject every recipient, so that failure is logged as an error.
    private func checkIdentityProviderInBackground() {
        let identities = identities
        let logger = logger
        _ = workers.submit {
            switch identities.checkProvider() {
            case .success(let text):
                logger.info("identity provider ready", [(.provider, text)])
            case .failure(let error):
                logger.error("identity provider check failed", [(.error, String(describing: error))])
            }
        }
    }

    /// Whether shutdown has begun: no new connections are accepted. A readiness check reports not ready.
    public var isDraining: Bool { drainStarted.load(ordering: .relaxed) }

    /// Stops accepting, then waits until every connection has closed after its current request
    /// was answered, until `timeout` seconds passed, or until `interrupted` returns true (it is
    /// polled every 10 ms). Returns the connections still open. Call ``stop()`` after it to close them.
    @discardableResult
    public func drain(timeout: Double, interrupted: () -> Bool = { false }) -> Int {
        drainStarted.store(true, ordering: .relaxed)
        metrics.setDraining(true)
        logger.info("draining connections", [(.count, String(loops.openConnections)),
                                              (.duration, String(Int(timeout * 1000)))])
        loops.beginDrain()
        let deadline = Reactor.monotonicSeconds() + timeout
        var wasInterrupted = false
        while loops.openConnections > 0, Reactor.monotonicSeconds() < deadline {
            if interrupted() {
                wasInterrupted = true
                break
            }
            usleep(10_000)
        }
        let remaining = loops.openConnections
        if wasInterrupted {
            logger.warning("drain interrupted, closing remaining connections", [(.count, String(remaining))])
        } else if remaining > 0 {
            logger.warning("drain timeout passed, closing remaining connections", [(.count, String(remaining))])
        } else {
            logger.info("drain finished")
        }
        return remaining
    }

    /// Closes the listeners' connections, lets queued lookups finish, and stops the store.
    public func stop() {
        metrics.setListenersUp(false)
        metrics.stop()
        securityWatcher.stop()
        loops.stop()
        workers.shutdown()
        identities.stop()
        store.stop()
        for listener in listeners where listener.isUnix {
            _ = listener.boundAddress.dropFirst("unix:".count).withCString { unlink($0) }
        }
        logger.info("mailcloak stopped")
    }
}
