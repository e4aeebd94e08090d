// The set of reactor threads: one event loop per thread, every listener
// registered in every loop (EPOLLEXCLUSIVE wakes one loop per connection).
import Locking
import Log
#if canImport(Glibc)
import Glibc
#endif

/// Reactor threads serving a set of listeners.
public final class ServerLoopGroup: Sendable {
    public let loops: [EventLoop]
    public let listeners: [ListeningSocket]
    /// The connection limits shared by every loop, with the count of connections they rejected.
    public let admission: ConnectionAdmission
    private let threads = ThreadList()

    /// Creates `threadCount` loops (0 means one per online core) serving `listeners`.
    public init(
        threadCount: Int, listeners: [ListeningSocket], limits: ConnectionLimits,
        factory: any ConnectionHandlerFactory, logger: Logger = .shared
    ) throws(ReactorError) {
        let count = threadCount > 0 ? threadCount : max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let admission = ConnectionAdmission(
            maxConnections: limits.maxConnections, maxConnectionsPerSource: limits.maxConnectionsPerSource)
        var loops: [EventLoop] = []
        for index in 0..<count {
            let loop = try EventLoop(
                index: index, limits: limits, factory: factory, logger: logger, admission: admission)
            for listener in listeners {
                try loop.addListener(listener)
            }
            loops.append(loop)
        }
        self.loops = loops
        self.listeners = listeners
        self.admission = admission
    }

    /// Starts one thread per loop.
    public func start() {
        for loop in loops {
            threads.append(startThread(name: "mc-loop-\(loop.index)") { loop.run() })
        }
    }

    /// Stops accepting on every loop, closes idle connections now and the others once their
    /// current request is answered. Returns at once; `openConnections` reaches 0 when all are closed.
    ///
    /// Once no loop accepts any more, the listening sockets are closed, so that new connections
    /// are refused at once (a load balancer retries them on another instance) instead of waiting
    /// in the accept queue until the process exits and then being reset.
    public func beginDrain() {
        let loopsLeft = Locked(loops.count)
        let listeners = listeners
        for loop in loops {
            loop.beginDrain {
                let isLast = loopsLeft.withLock { count in
                    count -= 1
                    return count == 0
                }
                if isLast {
                    for listener in listeners { listener.close() }
                }
            }
        }
    }

    /// Connections closed at accept because of `reason`, since start; readable from any thread.
    public func rejectedConnections(_ reason: AdmissionRejection) -> UInt64 {
        admission.rejectedCount(reason)
    }

    /// Stops every loop, closing its connections, and joins the threads.
    public func stop() {
        for loop in loops { loop.requestStop() }
        threads.joinAll()
    }

    /// Connections open across all loops.
    public var openConnections: Int { loops.reduce(0) { $0 + $1.openConnections } }
}

/// Thread handles started by a group, joined once at stop.
private final class ThreadList: @unchecked Sendable {
    // Unchecked: `threads` is only touched under `lock`.
    private var threads: [pthread_t] = []
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() { pthread_mutex_init(lock, nil) }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    func append(_ thread: pthread_t) {
        pthread_mutex_lock(lock)
        threads.append(thread)
        pthread_mutex_unlock(lock)
    }

    func joinAll() {
        pthread_mutex_lock(lock)
        let taken = threads
        threads.removeAll()
        pthread_mutex_unlock(lock)
        for thread in taken { pthread_join(thread, nil) }
    }
}
