// The security state of one listener: its current TLS context, access rules
// and PROXY protocol balancers, swapped atomically on reload. A connection
// takes the context when it is accepted, so a reload changes only new
// handshakes; established connections keep the context they started with.
import Config
import Log
import Synchronization
#if canImport(Glibc)
import Glibc
import Locking
#endif

/// Counts of security events on one listener, readable from any thread.
public final class SecurityCounters: Sendable {
    public let handshakesCompleted = Atomic<Int>(0)
    public let handshakesResumed = Atomic<Int>(0)
    public let handshakesFailed = Atomic<Int>(0)
    public let handshakeTimeouts = Atomic<Int>(0)
    public let proxyHeadersRejected = Atomic<Int>(0)
    public let policyDenied = Atomic<Int>(0)
    public let socketmapDenied = Atomic<Int>(0)
    public let reloads = Atomic<Int>(0)
    public let reloadFailures = Atomic<Int>(0)

    public init() {}

    public static func bump(_ counter: borrowing Atomic<Int>) {
        counter.add(1, ordering: .relaxed)
    }
}

/// Identifies a file's content version: a replaced or rewritten file changes it.
struct FileStamp: Equatable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: Int
    var modifiedNanoseconds: Int

    init?(path: String) {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = Int64(status.st_size)
        modified = status.st_mtim.tv_sec
        modifiedNanoseconds = status.st_mtim.tv_nsec
    }
}

/// One listener's TLS context, access rules and balancer list.
public final class ListenerSecurity: Sendable {
    private struct State {
        var config: ListenerConfig
        var context: TLSContext?
        var stamps: [FileStamp?]
        var lastCheck: Double
        var lastExpiryWarning: Double
    }

    public let listenerName: String
    public let counters = SecurityCounters()
    let logger: Logger
    private let state: Locked<State>

    /// Loads the listener's TLS material; throws when it is unusable, so a bad start fails.
    public init(config: ListenerConfig, logger: Logger = .shared) throws(TLSError) {
        listenerName = config.name
        self.logger = logger
        var context: TLSContext?
        if let tls = config.tls {
            context = try TLSContext.load(tls)
        }
        let stamps = (config.tls?.files ?? []).map { FileStamp(path: $0) }
        state = Locked(State(config: config, context: context, stamps: stamps, lastCheck: monotonicSeconds(),
                            lastExpiryWarning: -1e12))
        warnAboutExpiry(force: true)
    }

    /// The context for a new handshake, or nil on a plain listener.
    public var context: TLSContext? { state.withLock { $0.context } }

    /// Whether the listener uses TLS.
    public var isTLS: Bool { state.withLock { $0.config.tls != nil } }

    /// Time allowed for the PROXY header and TLS handshake.
    public var handshakeTimeout: Double { state.withLock { $0.config.tls?.handshakeTimeout ?? 10 } }

    /// Whether a connection from `address` must start with a PROXY v2 header.
    public func expectsProxyHeader(from address: [UInt8]?) -> Bool {
        guard let address else { return false }
        return state.withLock { current in current.config.proxyProtocolFrom.contains { $0.contains(address) } }
    }

    /// The services a client with `identity` at `address` may use.
    public func grant(identity: PeerIdentity?, address: [UInt8]?) -> AccessGrant {
        let rules = state.withLock { $0.config.acl }
        guard let rules else { return .everything }
        return AccessGrant.evaluate(rules, identity: identity, address: address)
    }

    /// Every loaded certificate's expiry: the server chain and the client CAs.
    public var certificateExpiries: [CertificateExpiry] { context?.expiries ?? [] }

    /// Applies a listener's new settings (from a reloaded configuration): new
    /// TLS material, access rules and balancers. On bad TLS material the old
    /// settings stay and the error is logged and returned.
    @discardableResult
    public func reload(_ config: ListenerConfig, reason: String) -> TLSError? {
        var context: TLSContext?
        if let tls = config.tls {
            do throws(TLSError) {
                context = try TLSContext.load(tls)
            } catch {
                SecurityCounters.bump(counters.reloadFailures)
                logger.error("TLS reload failed, keeping the TLS context in use", [
                    (.listener, listenerName), (.reason, reason), (.error, error.message),
                ])
                return error
            }
        }
        let stamps = (config.tls?.files ?? []).map { FileStamp(path: $0) }
        state.withLock { current in
            current.config = config
            current.context = context
            current.stamps = stamps
        }
        SecurityCounters.bump(counters.reloads)
        logger.notice("TLS and access rules reloaded", [
            (.listener, listenerName), (.reason, reason), (.count, String(config.acl?.count ?? 0)),
        ])
        warnAboutExpiry(force: true)
        return nil
    }

    /// Reloads the TLS material when a file changed since the last load and the check interval passed.
    public func reloadIfFilesChanged(now: Double = monotonicSeconds()) {
        let due: ListenerConfig? = state.withLock { current in
            guard let tls = current.config.tls, tls.reloadInterval > 0, now - current.lastCheck >= tls.reloadInterval
            else { return nil }
            current.lastCheck = now
            let stamps = tls.files.map { FileStamp(path: $0) }
            return stamps == current.stamps ? nil : current.config
        }
        if let due {
            if reload(due, reason: "file changed") != nil {
                // Remember the bad files, so the same failure is not logged every interval.
                let stamps = (due.tls?.files ?? []).map { FileStamp(path: $0) }
                state.withLock { $0.stamps = stamps }
            }
        }
        warnAboutExpiry(force: false)
    }

    /// Logs a warning for each certificate that expires within the warning window; at most twice a day unless forced.
    private func warnAboutExpiry(force: Bool) {
        let now = monotonicSeconds()
        let (window, expiries): (Double, [CertificateExpiry]) = state.withLock { current in
            guard force || now - current.lastExpiryWarning >= 43200 else { return (0, []) }
            current.lastExpiryWarning = now
            return (current.config.tls?.expiryWarning ?? 0, current.context?.expiries ?? [])
        }
        let wallNow = wallClockSeconds()
        for expiry in expiries where expiry.notAfter - wallNow < window {
            logger.warning("certificate expires soon", [
                (.listener, listenerName), (.path, expiry.path), (.user, expiry.subject),
                (.value, formatUTC(expiry.notAfter)),
            ])
        }
    }
}

/// A background thread that checks the listeners' TLS files every second.
public final class SecurityWatcher: Sendable {
    private let securities: [ListenerSecurity]
    private let stopRequested = Atomic<Bool>(false)
    private let thread = Locked<pthread_t?>(nil)

    public init(_ securities: [ListenerSecurity]) {
        self.securities = securities
    }

    public func start() {
        guard !securities.isEmpty else { return }
        let securities = securities
        let handle = startThread(name: "mc-tls-watch") { [self] in
            while !stopRequested.load(ordering: .relaxed) {
                for security in securities { security.reloadIfFilesChanged() }
                var pause = timespec(tv_sec: 0, tv_nsec: 250_000_000)
                for _ in 0..<4 where !stopRequested.load(ordering: .relaxed) {
                    nanosleep(&pause, nil)
                }
            }
        }
        thread.withLock { $0 = handle }
    }

    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        if let handle = thread.withLock({ current -> pthread_t? in
            let taken = current
            current = nil
            return taken
        }) {
            pthread_join(handle, nil)
        }
    }
}
