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

    /// Binds every listener and builds every part; nothing runs until `start()`.
    public init(configuration: Configuration, logger: Logger = .shared) throws {
        self.configuration = configuration
        self.logger = logger
        var sockets: [ListeningSocket] = []
        for listener in configuration.listeners {
            sockets.append(try ListeningSocket.bind(listener))
        }
        store = SnapshotStore(config: configuration.database, logger: logger)
        identities = try makeIdentityDirectory(config: configuration.identity, logger: logger)
        workers = WorkerPool(
            threads: configuration.server.workerThreads, queueLimit: configuration.server.workerQueueLimit)
        let resolver = Resolver(
            config: configuration.policy, snapshots: store, identities: identities, logger: logger)
        let context = ServiceContext(
            resolver: resolver, identities: identities, workers: workers, server: configuration.server,
            logger: logger)
        let limits = ConnectionLimits(
            idleTimeout: configuration.server.idleTimeout, ioTimeout: configuration.server.ioTimeout,
            maxBufferedInput: max(configuration.server.policyMaxRequestSize, 64 * 1024) * 2)
        loops = try ServerLoopGroup(
            threadCount: configuration.server.reactorThreads, listeners: sockets, limits: limits,
            factory: SessionFactory(context: context), logger: logger)
    }

    /// The listeners as bound, with the real port where the configuration gave port 0.
    public var listeners: [ListenerInfo] { loops.listeners.map(\.info) }

    /// Starts the store, then the reactor threads. Requests that arrive before
    /// the first snapshot get `451 4.3.0 Temporary internal error` (policy) or `TEMP` (socketmap).
    public func start(snapshotWait: Double = 5) {
        store.start()
        if !store.waitForFirstSnapshot(timeout: snapshotWait) {
            logger.warning("serving without a database snapshot; requests get temporary failures until it loads")
        }
        loops.start()
        for listener in listeners {
            logger.info("listening", [(.listener, listener.name), (.address, listener.boundAddress),
                                      (.service, listener.services.map(\.rawValue).sorted().joined(separator: ","))])
        }
        logger.info("mailcloak started", [(.threads, String(loops.loops.count)),
                                          (.workers, String(workers.threadCount))])
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

    /// Closes the listeners' connections, lets queued lookups finish, and stops the store.
    public func stop() {
        loops.stop()
        workers.shutdown()
        store.stop()
        for listener in listeners where listener.isUnix {
            _ = listener.boundAddress.dropFirst("unix:".count).withCString { unlink($0) }
        }
        logger.info("mailcloak stopped")
    }
}
