// One libpq connection, driven in non-blocking mode: connecting, running a
// statement and waiting for notifications all poll the socket with a
// deadline and an optional wake-up descriptor. A stuck server therefore
// costs at most the deadline, and SnapshotStore.stop() interrupts any wait.
// Not thread-safe: a connection lives on the thread that opened it.
// NOTE: Host names are resolved inside PQconnectStartParams, which blocks
// for the resolver's own timeout; only IP addresses and sockets are bounded.
import CLibPQ

#if canImport(Glibc)
import Glibc
#endif

/// One NOTIFY message received on a LISTEN channel.
package struct PostgresNotification: Sendable, Equatable {
    package let channel: String
    package let payload: String
}

/// An open connection to PostgreSQL.
package final class PostgresConnection {
    package let info: ConnectionInfo
    private var handle: OpaquePointer?
    private let wakeDescriptor: Int32?
    /// Client-side limit for one statement, set above the server's statement_timeout.
    private let queryDeadline: Double

    /// Opens a connection and sets `statement_timeout`.
    /// - Parameters:
    ///   - conninfo: a libpq connection string or URI.
    ///   - applicationName: shown in pg_stat_activity unless the string sets one.
    ///   - connectTimeout: seconds for the whole connection setup.
    ///   - statementTimeout: seconds; the server cancels longer statements.
    ///   - wakeDescriptor: a descriptor that becomes readable to interrupt any wait.
    /// - Throws: `StoreError.connectionFailed`, `.timedOut`, `.stopped` or
    ///   `.invalidConnectionString`.
    package init(
        conninfo: String, applicationName: String, connectTimeout: Double,
        statementTimeout: Double, wakeDescriptor: Int32? = nil
    ) throws(StoreError) {
        self.info = try ConnectionInfo(conninfo)
        self.wakeDescriptor = wakeDescriptor
        self.queryDeadline = statementTimeout + max(connectTimeout, 1)
        try open(applicationName: applicationName, connectTimeout: connectTimeout)
        let milliseconds = max(Int(statementTimeout * 1000), 1)
        // NOTICEs (such as "already exists, skipping") would go to stderr unstructured.
        try execute("SET statement_timeout = \(milliseconds); SET client_min_messages = warning")
    }

    deinit {
        if let handle { PQfinish(handle) }
    }

    /// Whether the connection is still usable.
    package var isOpen: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// The server version as `15.18`, from the `server_version` parameter.
    package var serverVersion: String {
        guard let handle, let value = PQparameterStatus(handle, "server_version") else { return "unknown" }
        return String(String(cString: value).prefix { $0 != " " })
    }

    /// The process id of the server backend, for pg_terminate_backend in tests.
    package var backendProcessID: Int32 {
        guard let handle else { return 0 }
        return PQbackendPID(handle)
    }

    /// Closes the connection. Later calls throw `connectionLost`.
    package func close() {
        if let handle { PQfinish(handle) }
        handle = nil
    }

    // MARK: - Connecting

    private func open(applicationName: String, connectTimeout: Double) throws(StoreError) {
        // Earlier keywords are defaults: the expanded connection string overrides them.
        let keywords = [
            "fallback_application_name", "connect_timeout", "keepalives_idle", "keepalives_interval",
            "keepalives_count", "dbname",
        ]
        let values = [
            applicationName, String(max(Int(connectTimeout.rounded(.up)), 2)), "30", "10", "3", info.conninfo,
        ]
        let connection = withCStringArrays(keywords, values) { keywordPointers, valuePointers in
            PQconnectStartParams(keywordPointers, valuePointers, 1)
        }
        guard let connection else {
            throw .connectionFailed(target: info.target, reason: "out of memory")
        }
        handle = connection

        let deadline = monotonicSeconds() + connectTimeout
        var pollStatus = PGRES_POLLING_WRITING
        while true {
            if PQstatus(connection) == CONNECTION_BAD || pollStatus == PGRES_POLLING_FAILED {
                let reason = lastErrorMessage()
                close()
                throw .connectionFailed(target: info.target, reason: reason)
            }
            if pollStatus == PGRES_POLLING_OK { break }

            let events = pollStatus == PGRES_POLLING_READING ? Int16(POLLIN) : Int16(POLLOUT)
            switch waitForSocket(events: events, deadline: deadline) {
            case .ready: break
            case .timedOut:
                close()
                throw .timedOut(operation: "connect to \(info.target)", seconds: connectTimeout)
            case .woken:
                close()
                throw .stopped
            }
            pollStatus = PQconnectPoll(connection)
        }
        if PQsetnonblocking(connection, 1) != 0 {
            let reason = lastErrorMessage()
            close()
            throw .connectionFailed(target: info.target, reason: reason)
        }
    }

    // MARK: - Statements

    /// Runs `sql` and returns the rows of its last result.
    ///
    /// Without parameters the simple query protocol is used, so `sql` may hold
    /// several statements. With parameters, `$1`... are bound as text (nil is NULL).
    /// - Throws: `StoreError.queryFailed` with the SQLSTATE, `.connectionLost`,
    ///   `.timedOut` (the connection is then closed) or `.stopped`.
    @discardableResult
    package func execute(_ sql: String, _ parameters: [String?] = []) throws(StoreError) -> PostgresRows {
        let connection = try requireHandle()
        let sent: Int32
        if parameters.isEmpty {
            sent = PQsendQuery(connection, sql)
        } else {
            sent = withOptionalCStrings(parameters) { pointers in
                PQsendQueryParams(connection, sql, Int32(parameters.count), nil, pointers, nil, nil, 0)
            }
        }
        guard sent == 1 else { throw lostOrFailed() }

        let deadline = monotonicSeconds() + queryDeadline
        try flushOutput(deadline: deadline)
        try awaitResults(deadline: deadline)
        return try collectResults()
    }

    /// Runs `body` inside BEGIN/COMMIT, rolling back when it throws.
    package func transaction<T>(
        _ begin: String = "BEGIN", _ body: () throws(StoreError) -> T
    ) throws(StoreError) -> T {
        try execute(begin)
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            // The first error is the one raised. A failed ROLLBACK needs no report, because the server
            // aborts the transaction when the connection closes.
            if isOpen { _ = try? execute("ROLLBACK") }
            throw error
        }
    }

    private func flushOutput(deadline: Double) throws(StoreError) {
        let connection = try requireHandle()
        while true {
            let result = PQflush(connection)
            if result == 0 { return }
            if result < 0 { throw lostOrFailed() }
            try waitOrThrow(events: Int16(POLLOUT | POLLIN), deadline: deadline)
            if PQconsumeInput(connection) == 0 { throw lostOrFailed() }
        }
    }

    private func awaitResults(deadline: Double) throws(StoreError) {
        let connection = try requireHandle()
        while PQisBusy(connection) == 1 {
            try waitOrThrow(events: Int16(POLLIN), deadline: deadline)
            if PQconsumeInput(connection) == 0 { throw lostOrFailed() }
        }
    }

    /// Reads every result of the statement; the first error wins, the last rows are returned.
    private func collectResults() throws(StoreError) -> PostgresRows {
        let connection = try requireHandle()
        var rows = PostgresRows(columns: [], rows: [])
        var failure: StoreError?
        while let result = PQgetResult(connection) {
            defer { PQclear(result) }
            switch PQresultStatus(result) {
            case PGRES_TUPLES_OK, PGRES_SINGLE_TUPLE:
                rows = PostgresRows(result: result)
            case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
                rows = PostgresRows(columns: [], rows: [])
            case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
                if failure == nil { failure = resultError(result) }
            default:
                if failure == nil { failure = .unexpectedResult("result status \(PQresultStatus(result).rawValue)") }
            }
            // A busy connection here means more results are on their way.
            if PQisBusy(connection) == 1 {
                try awaitResults(deadline: monotonicSeconds() + queryDeadline)
            }
        }
        if let failure {
            if !isOpen { throw lostOrFailed() }
            throw failure
        }
        return rows
    }

    private func resultError(_ result: OpaquePointer) -> StoreError {
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? "XX000"
        var message = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
            ?? String(cString: PQresultErrorMessage(result)).trimmingWhitespace()
        if let detail = PQresultErrorField(result, Int32(UInt8(ascii: "D"))) {
            message += " (\(String(cString: detail)))"
        }
        return .queryFailed(sqlState: state, message: info.redact(message))
    }

    // MARK: - Notifications

    /// Returns the notifications that arrive before `deadline`: at once when
    /// some are queued, else after the first arrival, else empty at the deadline.
    /// - Throws: `StoreError.connectionLost` or `.stopped`.
    package func waitForNotifications(until deadline: Double) throws(StoreError) -> [PostgresNotification] {
        let connection = try requireHandle()
        var received = drainNotifications(connection)
        while received.isEmpty {
            switch waitForSocket(events: Int16(POLLIN), deadline: deadline) {
            case .timedOut: return []
            case .woken: throw .stopped
            case .ready: break
            }
            if PQconsumeInput(connection) == 0 || PQstatus(connection) != CONNECTION_OK { throw lostOrFailed() }
            received = drainNotifications(connection)
        }
        return received
    }

    private func drainNotifications(_ connection: OpaquePointer) -> [PostgresNotification] {
        var received: [PostgresNotification] = []
        while let notification = PQnotifies(connection) {
            received.append(PostgresNotification(
                channel: String(cString: notification.pointee.relname),
                payload: String(cString: notification.pointee.extra)))
            PQfreemem(notification)
        }
        return received
    }

    // MARK: - Helpers

    private func requireHandle() throws(StoreError) -> OpaquePointer {
        guard let handle, PQstatus(handle) == CONNECTION_OK else {
            throw .connectionLost(target: info.target, reason: "connection is closed")
        }
        return handle
    }

    /// Builds the error for a failed libpq call and closes a broken connection.
    private func lostOrFailed() -> StoreError {
        let reason = lastErrorMessage()
        if !isOpen {
            close()
            return .connectionLost(target: info.target, reason: reason)
        }
        return .queryFailed(sqlState: "08000", message: reason)
    }

    private func lastErrorMessage() -> String {
        guard let handle else { return "connection is closed" }
        let message = String(cString: PQerrorMessage(handle)).trimmingWhitespace()
        let firstLines = message.split(separator: "\n").prefix(3)
            .map { String($0).trimmingWhitespace() }.joined(separator: "; ")
        return info.redact(firstLines.isEmpty ? "unknown error" : firstLines)
    }

    private func waitOrThrow(events: Int16, deadline: Double) throws(StoreError) {
        switch waitForSocket(events: events, deadline: deadline) {
        case .ready: return
        case .woken: throw .stopped
        case .timedOut:
            close()
            throw .timedOut(operation: "statement", seconds: queryDeadline)
        }
    }

    private enum WaitOutcome { case ready, timedOut, woken }

    /// Polls the connection's socket (and the wake-up descriptor) until `deadline`.
    private func waitForSocket(events: Int16, deadline: Double) -> WaitOutcome {
        guard let handle else { return .ready }
        let socket = PQsocket(handle)
        if socket < 0 { return .ready }
        var descriptors = [pollfd(fd: socket, events: events, revents: 0)]
        if let wakeDescriptor { descriptors.append(pollfd(fd: wakeDescriptor, events: Int16(POLLIN), revents: 0)) }

        while true {
            let remaining = deadline - monotonicSeconds()
            if remaining <= 0 { return .timedOut }
            let milliseconds = Int32(min(remaining * 1000, 60_000).rounded(.up))
            let count = poll(&descriptors, nfds_t(descriptors.count), milliseconds)
            if count < 0 && errno == EINTR { continue }
            if count < 0 { return .ready }  // let libpq report the socket error
            if descriptors.count > 1 && descriptors[1].revents != 0 { return .woken }
            if descriptors[0].revents != 0 { return .ready }
        }
    }
}

/// Seconds on the monotonic clock, for deadlines.
package func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Seconds since the Unix epoch on the wall clock, for snapshot ages.
package func wallClockSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Calls `body` with two NULL-terminated arrays of C strings.
private func withCStringArrays<R>(
    _ first: [String], _ second: [String],
    _ body: (UnsafePointer<UnsafePointer<CChar>?>, UnsafePointer<UnsafePointer<CChar>?>) -> R
) -> R {
    let firstCopies = first.map { UnsafePointer(strdup($0)) } + [nil]
    let secondCopies = second.map { UnsafePointer(strdup($0)) } + [nil]
    defer {
        for pointer in firstCopies + secondCopies { free(UnsafeMutablePointer(mutating: pointer)) }
    }
    return firstCopies.withUnsafeBufferPointer { firstBuffer in
        secondCopies.withUnsafeBufferPointer { secondBuffer in
            body(firstBuffer.baseAddress!, secondBuffer.baseAddress!)
        }
    }
}

/// Calls `body` with an array of C strings where nil stays NULL.
private func withOptionalCStrings<R>(_ values: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = values.map { value in value.map { UnsafePointer(strdup($0)) } ?? nil }
    defer {
        for pointer in copies { free(UnsafeMutablePointer(mutating: pointer)) }
    }
    return copies.withUnsafeBufferPointer { buffer in body(buffer.baseAddress!) }
}
