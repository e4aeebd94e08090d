// One reactor thread: an epoll selector, the listeners it accepts from, the
// connections it accepted, and a queue through which other threads hand it
// work. All mutable state except that queue belongs to the loop's thread.
//
// NOTE: Deadlines are checked every 250 ms, so an idle or stalled connection
// can stay open up to 250 ms past its timeout.
//
// After an accept error such as EMFILE, a listener leaves the selector for a
// pause that doubles from 10 ms to 1 s and resets on the next accept. While
// draining, the loop accepts nothing and closes each connection that has no
// request in progress and no output queued.
import CShim
import Log
import Synchronization
#if canImport(Glibc)
import Glibc
import Locking
#endif

/// Creates the protocol handler of each accepted connection, on its loop's thread.
public protocol ConnectionHandlerFactory: Sendable {
    func makeHandler(for connection: Connection) -> any ConnectionHandler
}

/// Per-connection limits that the loop enforces.
public struct ConnectionLimits: Sendable {
    /// Seconds without traffic, with no request in progress, before a close.
    public var idleTimeout: Double
    /// Seconds a started request or pending output may take.
    public var ioTimeout: Double
    /// Bytes read but not yet consumed, at most; past it the connection closes.
    public var maxBufferedInput: Int
    /// Bytes queued for a slow reader, at most; past it the connection closes.
    public var maxBufferedOutput: Int
    /// Maximum open connections across the group's loops.
    public var maxConnections: Int
    /// Maximum open connections from one IP address. UNIX socket peers are exempt.
    public var maxConnectionsPerSource: Int

    public init(idleTimeout: Double, ioTimeout: Double, maxBufferedInput: Int = 256 * 1024,
                maxBufferedOutput: Int = 1024 * 1024, maxConnections: Int = 10000,
                maxConnectionsPerSource: Int = 1000) {
        self.idleTimeout = idleTimeout
        self.ioTimeout = ioTimeout
        self.maxBufferedInput = maxBufferedInput
        self.maxBufferedOutput = maxBufferedOutput
        self.maxConnections = maxConnections
        self.maxConnectionsPerSource = maxConnectionsPerSource
    }
}

private let wakeToken: UInt64 = 0
private let firstConnectionID: UInt64 = 1 << 20
private let connectionIDs = Atomic<UInt64>(firstConnectionID)

/// A single-threaded reactor.
///
/// `@unchecked Sendable` because every stored property is either immutable,
/// guarded by its own lock (`pending`, `stopRequested`), or touched only by
/// the loop's thread; methods that touch loop state check that they run there.
public final class EventLoop: @unchecked Sendable {
    public let index: Int
    let selector: EpollSelector
    let wakeDescriptor: Int32
    let limits: ConnectionLimits
    let factory: any ConnectionHandlerFactory
    let logger: Logger
    let admission: ConnectionAdmission
    private let pending = Locked<[@Sendable () -> Void]>([])
    private let stopRequested = Atomic<Bool>(false)
    private let connectionCount = Atomic<Int>(0)

    var listeners: [ListeningSocket] = []
    private var acceptBackoff: [Int: AcceptBackoff] = [:]
    /// Set by `beginDrain()`: listeners are removed and connections close once idle.
    private var isDraining = false
    /// Monotonic time when the drain began.
    private var drainStartedAt: Double = 0
    /// While draining, a connection whose last traffic is older than the drain closes only
    /// after this much quiet, because its client may be writing its next request right now.
    static let drainQuietPeriod: Double = 0.25
    var connections: [ConnectionID: Connection] = [:]
    private var readableQueue: [Connection] = []
    private var scratch = [UInt8](repeating: 0, count: 65536)
    private(set) var now: Double = monotonicSeconds()
    private var lastSweep: Double = monotonicSeconds()
    private var threadID: pthread_t?

    init(index: Int, limits: ConnectionLimits, factory: any ConnectionHandlerFactory, logger: Logger,
         admission: ConnectionAdmission) throws(ReactorError)
    {
        self.index = index
        self.limits = limits
        self.factory = factory
        self.logger = logger
        self.admission = admission
        selector = try EpollSelector()
        wakeDescriptor = mc_eventfd()
        guard wakeDescriptor >= 0 else { throw .systemCall("eventfd", errno) }
        try selector.add(wakeDescriptor, interest: .read, token: wakeToken)
    }

    deinit { Glibc.close(wakeDescriptor) }

    /// Connections currently open on this loop; readable from any thread.
    public var openConnections: Int { connectionCount.load(ordering: .relaxed) }

    /// Runs `task` on the loop's thread, soon. Callable from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        let wasEmpty = pending.withLock { queue in
            queue.append(task)
            return queue.count == 1
        }
        if wasEmpty { _ = mc_eventfd_signal(wakeDescriptor) }
    }

    /// Hands `message` to the handler of connection `id`, on the loop's thread.
    /// Dropped when the connection has closed meanwhile.
    public func deliver(_ message: any Sendable, to id: ConnectionID) {
        execute { [self] in
            guard let connection = connections[id], !connection.isClosed else { return }
            connection.handler?.connectionReceived(message, on: connection)
            connection.closeIfFinished()
        }
    }

    func addListener(_ listener: ListeningSocket) throws(ReactorError) {
        listeners.append(listener)
        try selector.add(listener.descriptor, interest: .accept, token: UInt64(listeners.count), exclusive: true)
    }

    func requestStop() {
        stopRequested.store(true, ordering: .relaxed)
        _ = mc_eventfd_signal(wakeDescriptor)
    }

    /// Stops accepting on this loop and closes each connection once it has no request
    /// in progress and no reply waiting to be written. Callable from any thread.
    /// `listenersRemoved` runs on the loop's thread once it accepts no more.
    func beginDrain(listenersRemoved: @escaping @Sendable () -> Void = {}) {
        execute { [self] in
            defer { listenersRemoved() }
            guard !isDraining else { return }
            isDraining = true
            drainStartedAt = monotonicSeconds()
            for listener in listeners {
                selector.remove(listener.descriptor)
            }
            acceptBackoff.removeAll()
            closeFinishedConnections()
        }
    }

    /// While draining, closes every connection that has nothing left to answer or write.
    /// A connection still in its PROXY header or TLS handshake has sent no request, so it closes too.
    private func closeFinishedConnections() {
        for connection in Array(connections.values) {
            guard connection.phase == .ready else {
                close(connection, reason: .shutdown)
                continue
            }
            guard connection.hasNothingPending else { continue }
            // A connection that got a reply after the drain began closes at once: its client
            // reads the reply and then the end of the stream. One quiet since before the drain
            // closes after `drainQuietPeriod`, so that a client in the middle of writing its
            // next request is not cut off.
            let repliedDuringDrain = connection.lastActivity >= drainStartedAt
            guard repliedDuringDrain || now - connection.lastActivity >= Self.drainQuietPeriod else { continue }
            // A request may wait in the socket buffer, unseen by epoll yet: read it before closing.
            // NOTE: A request that arrives between this read and the close is lost, and the client
            // sees a reset. That takes a client that wrote nothing for the quiet period and then
            // writes at that instant. Postfix then reconnects and asks again.
            if !connection.inputClosed {
                readAvailable(connection)
            }
            if !connection.isClosed, connection.hasNothingPending {
                close(connection, reason: .shutdown)
            }
        }
    }

    /// Runs the loop until `requestStop()`; then closes every connection.
    func run() {
        threadID = pthread_self()
        while !stopRequested.load(ordering: .relaxed) {
            selector.wait(timeoutMilliseconds: waitTimeoutMilliseconds()) { token, events in
                handle(token: token, events: events)
            }
            now = monotonicSeconds()
            drainReadableQueue()
            resumeListeners()
            if isDraining { closeFinishedConnections() }
            if now - lastSweep >= 0.25 {
                sweep()
                lastSweep = now
            }
        }
        runPending()
        for connection in Array(connections.values) {
            close(connection, reason: .shutdown)
        }
    }

    private func handle(token: UInt64, events: UInt32) {
        if token == wakeToken {
            _ = mc_eventfd_drain(wakeDescriptor)
            runPending()
        } else if token < firstConnectionID {
            acceptConnections(from: Int(token) - 1)
        } else if let connection = connections[token] {
            if connection.phase != .ready {
                advanceSetup(connection)
                return
            }
            if events & UInt32(truncatingIfNeeded: MC_EPOLLOUT) != 0 {
                connection.flush()
            }
            let readable = UInt32(truncatingIfNeeded: MC_EPOLLIN) | UInt32(truncatingIfNeeded: MC_EPOLLHUP)
                | UInt32(truncatingIfNeeded: MC_EPOLLERR) | UInt32(truncatingIfNeeded: MC_EPOLLRDHUP)
            if events & readable != 0, !connection.isClosed {
                readAvailable(connection)
            }
        }
    }

    private func runPending() {
        let tasks = pending.withLock { queue in
            let taken = queue
            queue.removeAll(keepingCapacity: true)
            return taken
        }
        for task in tasks { task() }
    }

    // MARK: Accepting

    private func acceptConnections(from listenerIndex: Int) {
        // An event from the same wait as the drain task may still name a listener, whose
        // socket another loop can close as soon as every loop has begun draining.
        guard !isDraining else { return }
        let listener = listeners[listenerIndex]
        for _ in 0..<64 {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    mc_accept_nonblocking(listener.descriptor, $0, &length)
                }
            }
            if fd < 0 {
                let code = errno
                if code == ECONNABORTED || code == EPROTO { continue }
                handleAcceptError(code, listenerIndex: listenerIndex)
                return
            }
            acceptSucceeded(listenerIndex: listenerIndex)
            let peer = listener.info.isUnix ? "unix" : describePeer(storage)
            let address = listener.info.isUnix ? nil : addressBytes(storage)
            if let rejection = admission.admit(source: address) {
                Glibc.close(fd)
                admission.logRejection(rejection, peer: peer, listener: listener.info.name, logger: logger)
                continue
            }
            if !listener.info.isUnix { setNoDelay(fd) }
            register(fd: fd, peer: peer, address: address, listener: listener)
        }
    }

    /// Pauses a listener after an accept error such as EMFILE, ENFILE, ENOBUFS or ENOMEM,
    /// because the level-triggered listener would otherwise report the waiting connection
    /// again at once. The pause doubles from 10 ms to 1 s while the errors go on.
    private func handleAcceptError(_ code: Int32, listenerIndex: Int) {
        guard code != EAGAIN, code != EINTR, !isDraining else { return }
        var backoff = acceptBackoff[listenerIndex] ?? AcceptBackoff()
        backoff.failures += 1
        backoff.delay = backoff.delay == 0 ? AcceptBackoff.minimumDelay : min(backoff.delay * 2, AcceptBackoff.maximumDelay)
        backoff.resumeAt = now + backoff.delay
        if backoff.failures == 1 {
            let name = listeners[listenerIndex].info.name
            // Each loop and listener pauses on its own, so keying by errno alone keeps a process-wide
            // limit such as EMFILE to one line per window.
            let context = LogContext(.errno, String(code))
            logger.log(.warning, "accept failed, pausing listener", limitedBy: context, [
                (.listener, name), (.errno, String(code)),
                (.error, String(cString: strerror(code))), (.delay, String(Int(backoff.delay * 1000))),
            ])
        }
        if !backoff.isPaused {
            selector.remove(listeners[listenerIndex].descriptor)
            backoff.isPaused = true
        }
        acceptBackoff[listenerIndex] = backoff
    }

    /// Ends an accept error burst on the listener and logs how many errors it had.
    private func acceptSucceeded(listenerIndex: Int) {
        guard let backoff = acceptBackoff.removeValue(forKey: listenerIndex) else { return }
        let name = listeners[listenerIndex].info.name
        logger.log(.notice, "accepting again after accept errors", limitedBy: LogContext(.listener, name), [
            (.listener, name), (.count, String(backoff.failures)),
        ])
    }

    /// Puts paused listeners whose pause has ended back into the selector.
    private func resumeListeners() {
        guard !isDraining else { return }
        for (index, backoff) in acceptBackoff where backoff.isPaused && backoff.resumeAt <= now {
            do {
                let descriptor = listeners[index].descriptor
                try selector.add(descriptor, interest: .accept, token: UInt64(index + 1), exclusive: true)
            } catch {
                // Stays paused and is retried after the longest pause.
                acceptBackoff[index]?.resumeAt = now + AcceptBackoff.maximumDelay
                let name = listeners[index].info.name
                logger.log(.error, "listener could not be resumed", limitedBy: LogContext(.listener, name), [
                    (.listener, name), (.error, String(describing: error)),
                ])
                continue
            }
            acceptBackoff[index]?.isPaused = false
        }
    }

    /// Milliseconds until the next sweep or the end of the earliest listener pause.
    private func waitTimeoutMilliseconds() -> Int32 {
        var wait = 0.25
        for backoff in acceptBackoff.values where backoff.isPaused {
            wait = min(wait, max(backoff.resumeAt - monotonicSeconds(), 0))
        }
        return Int32((wait * 1000).rounded(.up))
    }

    private func register(fd: Int32, peer: String, address: [UInt8]?, listener socket: ListeningSocket) {
        let listener = socket.info
        let id = connectionIDs.add(1, ordering: .relaxed).newValue
        let security = socket.security
        let transport: any Transport
        var phase = ConnectionPhase.ready
        if let security, let context = security.context {
            guard let tls = TLSTransport(context: context, fileDescriptor: fd) else {
                logger.log(.error, "TLS connection setup failed", limitedBy: LogContext(.listener, listener.name), [
                    (.peer, peer), (.listener, listener.name), (.error, openSSLErrors()),
                ])
                Glibc.close(fd)
                admission.release(source: address)
                return
            }
            transport = tls
            phase = .handshake
        } else {
            // A SocketTransport closes its descriptor when released, so make one only when it is used.
            transport = SocketTransport(fileDescriptor: fd)
        }
        if let security, security.expectsProxyHeader(from: address) {
            phase = .proxyHeader
        }
        let connection = Connection(
            id: id, peer: peer, listener: listener, transport: transport, loop: self, now: now, peerAddress: address,
            security: security)
        connection.admissionSource = address
        connection.phase = phase
        do {
            try selector.add(fd, interest: .read, token: id)
        } catch {
            logger.log(.error, "connection registration failed", limitedBy: LogContext(.listener, listener.name), [
                (.peer, peer), (.listener, listener.name), (.error, String(describing: error)),
            ])
            connection.transport.close()
            admission.release(source: address)
            return
        }
        connections[id] = connection
        connectionCount.add(1, ordering: .relaxed)
        logger.debug("connection opened", [(.connection, String(id)), (.peer, peer), (.listener, listener.name)])
        if phase == .ready {
            finishSetup(connection)
        } else {
            connection.setupDeadline = now + (security?.handshakeTimeout ?? 10)
        }
    }

    // MARK: PROXY header and TLS handshake

    /// Moves a connection through its PROXY header and TLS handshake as far as the socket allows.
    private func advanceSetup(_ connection: Connection) {
        if connection.phase == .proxyHeader {
            guard readProxyHeader(connection) else { return }
        }
        if connection.phase == .handshake {
            guard let tls = connection.transport as? TLSTransport else { return }
            switch tls.handshake() {
            case .complete:
                connection.peerIdentity = tls.peerIdentity()
                if let counters = connection.security?.counters {
                    SecurityCounters.bump(counters.handshakesCompleted)
                    if tls.isResumed { SecurityCounters.bump(counters.handshakesResumed) }
                }
            case .wouldBlock(let interest):
                setSetupInterest(connection, interest)
                return
            case .failed(let reason):
                if let counters = connection.security?.counters { SecurityCounters.bump(counters.handshakesFailed) }
                // Keyed by the reason alone, so a flood from many peers writes one line per reason.
                logger.log(.warning, "TLS handshake failed", limitedBy: LogContext(.reason, reason), [
                    (.connection, String(connection.id)), (.peer, connection.peer),
                    (.listener, connection.listener.name), (.reason, reason),
                ])
                close(connection, reason: .handshakeFailed)
                return
            }
        }
        finishSetup(connection)
    }

    /// Reads the PROXY v2 header byte by byte count, never past its end; true once it is complete.
    private func readProxyHeader(_ connection: Connection) -> Bool {
        while true {
            var needed = 16
            switch ProxyHeader.parse(connection.proxyBuffer) {
            case .needMore(let total):
                needed = total
            case .proxied(let address, let port, _):
                connection.peerAddress = address
                connection.peer = describeAddress(address, port: port)
                connection.proxyBuffer = []
                connection.phase = connection.transport is TLSTransport ? .handshake : .ready
                logger.debug("PROXY header read", [(.connection, String(connection.id)), (.peer, connection.peer)])
                return true
            case .local:
                connection.proxyBuffer = []
                connection.phase = connection.transport is TLSTransport ? .handshake : .ready
                return true
            case .invalid(let reason):
                if let counters = connection.security?.counters { SecurityCounters.bump(counters.proxyHeadersRejected) }
                logger.log(.warning, "invalid PROXY header", limitedBy: LogContext(.reason, reason), [
                    (.connection, String(connection.id)), (.peer, connection.peer),
                    (.listener, connection.listener.name), (.reason, reason),
                ])
                close(connection, reason: .proxyHeaderInvalid)
                return false
            }
            var chunk = [UInt8](repeating: 0, count: needed - connection.proxyBuffer.count)
            let count = chunk.withUnsafeMutableBytes { Glibc.read(connection.transport.fileDescriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                connection.proxyBuffer.append(contentsOf: chunk[0..<count])
                continue
            }
            if count < 0 && (errno == EAGAIN || errno == EINTR) {
                setSetupInterest(connection, .read)
                return false
            }
            logger.log(.warning, "connection closed before its PROXY header",
                       limitedBy: LogContext(.listener, connection.listener.name), [
                (.connection, String(connection.id)), (.peer, connection.peer), (.listener, connection.listener.name),
            ])
            close(connection, reason: .proxyHeaderInvalid)
            return false
        }
    }

    private func setSetupInterest(_ connection: Connection, _ interest: IOInterest) {
        guard connection.interest != interest, !connection.isClosed else { return }
        connection.interest = interest
        selector.modify(connection.transport.fileDescriptor, interest: interest, token: connection.id)
    }

    /// Decides the connection's access, then hands it to a protocol handler; from here on it reads requests.
    private func finishSetup(_ connection: Connection) {
        connection.phase = .ready
        connection.setupDeadline = nil
        connection.lastActivity = now
        if let security = connection.security {
            connection.grant = security.grant(identity: connection.peerIdentity, address: connection.peerAddress)
            logger.debug("client authorized", [
                (.connection, String(connection.id)), (.peer, connection.peer), (.listener, connection.listener.name),
                (.user, connection.peerIdentity?.description ?? ""),
                (.value, connection.grant.rules.isEmpty ? "(no rule)" : connection.grant.rules.joined(separator: ",")),
            ])
        }
        setSetupInterest(connection, .read)
        connection.handler = factory.makeHandler(for: connection)
        if connection.transport is TLSTransport {
            // The client's first request may have come with its last handshake message.
            readAvailable(connection)
        }
    }

    // MARK: Reading

    private func readAvailable(_ connection: Connection) {
        repeat {
            readOnce(connection)
        } while !connection.isClosed && !connection.inputClosed && connection.transport.hasBufferedInput
    }

    private func readOnce(_ connection: Connection) {
        let result = scratch.withUnsafeMutableBytes { connection.transport.read(into: $0) }
        switch result {
        case .bytes(let count):
            connection.lastActivity = now
            connection.input.append(contentsOf: scratch[0..<count])
            if connection.bufferedInputCount > limits.maxBufferedInput {
                close(connection, reason: .inputLimit)
                return
            }
            if !connection.isReadingPaused {
                connection.handler?.connectionReadable(connection)
            }
        case .wouldBlock:
            return
        case .endOfStream:
            endOfInput(connection)
        case .failed:
            close(connection, reason: .readFailed)
        }
    }

    /// The peer closed its sending side. A request in progress or queued output
    /// is still finished; otherwise the connection closes now.
    private func endOfInput(_ connection: Connection) {
        connection.inputClosed = true
        updateInterest(connection, removing: .read)
        connection.closeIfFinished()
    }

    func scheduleReadable(_ connection: Connection) {
        readableQueue.append(connection)
    }

    private func drainReadableQueue() {
        while !readableQueue.isEmpty {
            let batch = readableQueue
            readableQueue.removeAll()
            for connection in batch where !connection.isClosed && !connection.isReadingPaused {
                if connection.bufferedInputCount > 0 {
                    connection.handler?.connectionReadable(connection)
                }
                connection.closeIfFinished()
            }
        }
    }

    // MARK: Interest, deadlines and closing

    func updateInterest(_ connection: Connection, adding added: IOInterest = [], removing removed: IOInterest = []) {
        var interest = connection.interest.union(added)
        interest.subtract(removed)
        if connection.inputClosed { interest.remove(.read) }
        guard interest != connection.interest, !connection.isClosed else { return }
        connection.interest = interest
        selector.modify(connection.transport.fileDescriptor, interest: interest, token: connection.id)
    }

    private func sweep() {
        var expired: [(Connection, CloseReason)] = []
        for connection in connections.values {
            if let deadline = connection.setupDeadline, now > deadline {
                if let counters = connection.security?.counters { SecurityCounters.bump(counters.handshakeTimeouts) }
                // NOTE: Not rate-limited, so each stalled client gets a line with its peer. A flood is
                // bounded by server.max_connections per handshake_timeout.
                logger.warning("TLS handshake timed out", [
                    (.connection, String(connection.id)), (.peer, connection.peer), (.listener, connection.listener.name),
                ])
                expired.append((connection, .handshakeTimeout))
            } else if let started = connection.requestStarted, now - started > limits.ioTimeout {
                expired.append((connection, .ioTimeout))
            } else if let since = connection.outputPendingSince, now - since > limits.ioTimeout {
                expired.append((connection, .ioTimeout))
            } else if !connection.isReadingPaused, connection.requestStarted == nil,
                now - connection.lastActivity > limits.idleTimeout
            {
                expired.append((connection, .idleTimeout))
            }
        }
        for (connection, reason) in expired {
            close(connection, reason: reason)
        }
    }

    func close(_ connection: Connection, reason: CloseReason) {
        guard !connection.isClosed else { return }
        connection.isClosed = true
        selector.remove(connection.transport.fileDescriptor)
        connection.transport.close()
        connections[connection.id] = nil
        connectionCount.subtract(1, ordering: .relaxed)
        admission.release(source: connection.admissionSource)
        logger.debug("connection closed", [(.connection, String(connection.id)), (.reason, reason.rawValue)])
        let handler = connection.handler
        connection.handler = nil
        handler?.connectionClosed(connection, reason: reason)
    }
}

/// The pause of one listener after accept errors.
private struct AcceptBackoff {
    static let minimumDelay = 0.01
    static let maximumDelay = 1.0
    /// Accept errors since the last accepted connection.
    var failures = 0
    /// The current pause in seconds; 0 before the first error.
    var delay = 0.0
    /// Monotonic time at which the listener goes back into the selector.
    var resumeAt = 0.0
    /// Whether the listener is out of the selector now.
    var isPaused = false
}

/// Seconds on the monotonic clock.
public func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

private func setNoDelay(_ fd: Int32) {
    var one: Int32 = 1
    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
}
