// The daemon's in-memory copy of PostgreSQL. One background thread owns the
// only connection. It checks the schema version, LISTENs on
// mailcloak_changed and reloads on notifications (bursts within 100 ms
// become one load) and every resyncInterval. After a failure it reconnects
// with capped exponential backoff and keeps the last snapshot meanwhile.
// Readers call `current` from any thread, which only takes a mutex.
import Config
import Dispatch
import Foundation
import Log
import Model
import Locking

#if canImport(Glibc)
import Glibc
#endif

/// Keeps a current `Snapshot` of the database for request threads.
public final class SnapshotStore: Sendable {
    /// The channel the table triggers notify.
    package static let channel = "mailcloak_changed"
    /// Notifications arriving within this window after the first one cause one reload.
    static let coalesceWindow: Double = 0.1
    /// First reconnect delay; it doubles per failed attempt up to maxReconnectDelay.
    static let initialReconnectDelay: Double = 0.25
    /// How long stop() waits for the thread before returning anyway.
    static let stopTimeout: Double = 3

    private let config: DatabaseConfig
    private let logger: Logger
    private let snapshotBox = Locked<Snapshot?>(nil)
    private let state = Locked(RunState())
    private let wakeReadDescriptor: Int32
    private let wakeWriteDescriptor: Int32
    private let firstSnapshotGroup = DispatchGroup()
    private let threadFinished = DispatchSemaphore(value: 0)

    /// Mutable state shared between the store thread and status readers.
    private struct RunState {
        var started = false
        var stopRequested = false
        var joined = false
        var firstSnapshotSignalled = false
        var status = StoreStatus()
        var lastSkippedRows = 0
    }

    public init(config: DatabaseConfig, logger: Logger = .shared) {
        self.config = config
        self.logger = logger
        var descriptors: [Int32] = [-1, -1]
        let result = pipe(&descriptors)
        precondition(result == 0, "pipe failed with errno \(errno)")
        for descriptor in descriptors {
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
            _ = fcntl(descriptor, F_SETFL, O_NONBLOCK)
        }
        wakeReadDescriptor = descriptors[0]
        wakeWriteDescriptor = descriptors[1]
        firstSnapshotGroup.enter()
    }

    deinit {
        if !state.withLock({ $0.firstSnapshotSignalled }) { firstSnapshotGroup.leave() }
        close(wakeReadDescriptor)
        close(wakeWriteDescriptor)
    }

    /// Starts the background thread. Calling it again, or after `stop()`, does nothing.
    public func start() {
        let shouldStart = state.withLock { state -> Bool in
            guard !state.started, !state.stopRequested else { return false }
            state.started = true
            return true
        }
        guard shouldStart else { return }
        let thread = Thread { [self] in
            run()
            threadFinished.signal()
        }
        thread.name = "mailcloak-store"
        thread.start()
    }

    /// Stops the background thread and waits for it (at most 3 s). The last
    /// snapshot stays readable through `current`.
    public func stop() {
        let mustJoin = state.withLock { state -> Bool in
            state.stopRequested = true
            guard state.started, !state.joined else { return false }
            state.joined = true
            return true
        }
        var byte: UInt8 = 1
        _ = write(wakeWriteDescriptor, &byte, 1)
        guard mustJoin else { return }
        if threadFinished.wait(timeout: .now() + Self.stopTimeout) == .timedOut {
            logger.warning("store thread did not stop in time", [(.limit, formatSeconds(Self.stopTimeout))])
        }
    }

    /// The latest snapshot; nil until the first load. Cheap and thread-safe.
    public var current: Snapshot? {
        snapshotBox.withLock { $0 }
    }

    /// Waits until the first snapshot is loaded or `timeout` seconds pass.
    /// - Returns: whether a snapshot is available.
    public func waitForFirstSnapshot(timeout: Double) -> Bool {
        if current != nil { return true }
        _ = firstSnapshotGroup.wait(timeout: .now() + max(timeout, 0))
        return current != nil
    }

    /// Connection state, snapshot age and row counts.
    public var status: StoreStatus {
        var status = state.withLock { $0.status }
        if let loadedAt = current?.loadedAt {
            status.snapshotAge = max(0, wallClockSeconds() - loadedAt)
        }
        return status
    }

    private var stopRequested: Bool {
        state.withLock { $0.stopRequested }
    }
}

// MARK: - The store thread

extension SnapshotStore {
    /// Connects, loads and listens until stop(); reconnects after any failure.
    private func run() {
        var attempt = 0
        while !stopRequested {
            do throws(StoreError) {
                let connection = try connect()
                try ensureSchema(connection)
                try connection.execute("LISTEN \(Self.channel)")
                try reload(connection, reason: "connect")
                attempt = 0
                try listen(connection)
            } catch .stopped {
                break
            } catch {
                attempt += 1
                recordFailure(error, attempt: attempt)
                if !sleepBeforeReconnect(attempt: attempt) { break }
            }
        }
        state.withLock { $0.status.connected = false }
        logger.info("store stopped")
    }

    private func connect() throws(StoreError) -> PostgresConnection {
        let connection = try PostgresConnection(
            conninfo: config.url, applicationName: "mailcloak", connectTimeout: config.connectTimeout,
            statementTimeout: config.statementTimeout, wakeDescriptor: wakeReadDescriptor)
        let connects = state.withLock { state -> Int in
            state.status.connects += 1
            return state.status.connects
        }
        logger.info("store connected", [
            (.url, connection.info.target), (.version, connection.serverVersion), (.count, String(connects)),
        ])
        return connection
    }

    /// Reads the schema version; a database behind this build is an error until migrated.
    private func ensureSchema(_ connection: PostgresConnection) throws(StoreError) {
        let version = try Migrations.currentVersion(connection)
        state.withLock { $0.status.schemaVersion = version }
        switch SchemaCheck(found: version) {
        case .current:
            return
        case .behind(let found, let expected):
            throw .schemaBehind(found: found, expected: expected)
        case .ahead(let found, let expected):
            logger.warning("database schema is newer than this build", [
                (.version, String(found)), (.value, String(expected)),
            ])
        }
    }

    /// Waits for notifications and the resync timer, reloading after each.
    private func listen(_ connection: PostgresConnection) throws(StoreError) {
        let resyncInterval = max(config.resyncInterval, 1)
        var nextResync = monotonicSeconds() + resyncInterval
        while true {
            let notifications = try connection.waitForNotifications(until: nextResync)
            if notifications.isEmpty {
                try reload(connection, reason: "resync")
                nextResync = monotonicSeconds() + resyncInterval
                continue
            }

            // Let a burst of changes (an import, a script) finish before reading.
            let windowEnd = monotonicSeconds() + Self.coalesceWindow
            var tables = Set(notifications.map(\.payload))
            while monotonicSeconds() < windowEnd {
                let more = try connection.waitForNotifications(until: windowEnd)
                if more.isEmpty { break }
                tables.formUnion(more.map(\.payload))
            }
            try reload(connection, reason: "notify " + tables.sorted().joined(separator: ","))
            nextResync = monotonicSeconds() + resyncInterval
        }
    }

    private func reload(_ connection: PostgresConnection, reason: String) throws(StoreError) {
        let started = monotonicSeconds()
        let loaded = try SnapshotLoader.load(connection)
        let milliseconds = Int((monotonicSeconds() - started) * 1000)
        snapshotBox.withLock { $0 = loaded.snapshot }

        let (isFirst, skippedChanged) = state.withLock { state -> (Bool, Bool) in
            state.status.connected = true
            state.status.counts = loaded.counts
            state.status.lastError = nil
            state.status.loads += 1
            let skippedChanged = state.lastSkippedRows != loaded.skippedRows
            state.lastSkippedRows = loaded.skippedRows
            let isFirst = !state.firstSnapshotSignalled
            state.firstSnapshotSignalled = true
            return (isFirst, skippedChanged)
        }
        if isFirst { firstSnapshotGroup.leave() }

        let counts = loaded.counts
        logger.info("snapshot loaded", [
            (.reason, reason),
            (.rows, "domains:\(counts.domains),aliases:\(counts.aliases),apps:\(counts.apps),"
                + "app_senders:\(counts.appSenders)"),
            (.duration, String(milliseconds)),
        ])
        if skippedChanged && loaded.skippedRows > 0 {
            logger.warning("snapshot rows skipped: invalid address", [
                (.count, String(loaded.skippedRows)), (.value, loaded.firstSkipped ?? ""),
            ])
        }
    }

    private func recordFailure(_ error: StoreError, attempt: Int) {
        let hasSnapshot = current != nil
        state.withLock { state in
            state.status.connected = false
            state.status.lastError = error.description
            state.status.failures += 1
        }
        // Rate-limited by the error text, so an outage writes one line per 10 s and error, plus a count.
        let context = LogContext(.error, error.description)
        if case .schemaBehind = error {
            logger.log(.error, "database schema is behind; run mailcloakctl migrate", limitedBy: context, [
                (.error, error.description), (.attempt, String(attempt)),
            ])
            return
        }
        let event = hasSnapshot ? "store disconnected, serving last snapshot" : "store connection failed"
        logger.log(.warning, event, limitedBy: context, [(.error, error.description), (.attempt, String(attempt))])
    }

    /// Sleeps the backoff delay for `attempt`; returns false when stop() interrupts it.
    private func sleepBeforeReconnect(attempt: Int) -> Bool {
        let exponent = Double(min(attempt - 1, 30))
        let capped = min(Self.initialReconnectDelay * pow(2, exponent), max(config.maxReconnectDelay, 0.01))
        // Up to 20% jitter, so a fleet does not reconnect in lockstep after a restart.
        let delay = capped * Double.random(in: 0.8...1.0)
        logger.debug("store reconnect scheduled", [(.delay, String(Int(delay * 1000)))])

        var descriptor = pollfd(fd: wakeReadDescriptor, events: Int16(POLLIN), revents: 0)
        let deadline = monotonicSeconds() + delay
        while true {
            let remaining = deadline - monotonicSeconds()
            if remaining <= 0 { return !stopRequested }
            let result = poll(&descriptor, 1, Int32((remaining * 1000).rounded(.up)))
            if result > 0 { return false }
        }
    }
}
