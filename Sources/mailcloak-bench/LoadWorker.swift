// One load thread: an epoll loop driving its share of the connections, each
// with one request outstanding at a time, as Postfix does. Every connect and
// every request has a deadline; a connection that fails is closed, counted
// and reconnected after a short pause. With TLS the handshake, reads and
// writes run on the same loop: OpenSSL's WANT_READ and WANT_WRITE become the
// connection's epoll interest. With a new connection per request, a slot
// closes its connection after each reply and connects again at once. With
// --rate, requests go out at scheduled times (LoadWorker+Pacing.swift), and
// with --hold each connection stops after its first reply and stays open
// (LoadWorker+Hold.swift).

import COpenSSL
import CShim
#if canImport(Glibc)
import Glibc
#endif

/// The share of the load that one thread drives.
struct WorkerPlan: Sendable {
    var index: Int
    var threadCount: Int
    var connectionCount: Int
    var options: BenchOptions
    var workload: Workload
    var address: TargetAddress
    /// The client TLS context, or nil for plain connections.
    var tls: TLSClientContext?
    /// Monotonic nanoseconds when measuring starts (after the warmup).
    var measureStart: UInt64
    /// Requests this thread measures, in `--requests` mode.
    var requestQuota: Int?
    /// The count of established connections that the threads share, in hold mode.
    var holdProgress: HoldProgress?
}

/// The counts and latencies one thread measured.
struct WorkerResult: Sendable {
    var latencies = LatencyHistogram()
    var completed = 0
    /// Measured requests that ended in an error instead of a reply.
    var failed = 0
    var errors: [String: Int] = [:]
    var replies = ReplyCounter()
    var mismatches = 0
    var mismatchSamples: [(request: Int, expected: String, received: String)] = []
    /// Monotonic nanoseconds of the last measured reply.
    var lastReply: UInt64 = 0
    /// When the thread stopped early because no connect or reply succeeded for too long.
    var stalledAt: UInt64?
    /// Connects that succeeded while measuring.
    var connections = 0
    /// TLS handshakes completed while measuring, and how many of them resumed a session.
    var handshakes = 0
    var resumedHandshakes = 0
    /// The protocol version and cipher of the first completed handshake, such as "TLSv1.3 TLS_AES_256_GCM_SHA384".
    var negotiated: String?
    /// With --rate: requests whose scheduled time had come but that were still unsent when the run ended,
    /// because every connection was busy.
    var scheduledUnsent = 0
    /// In hold mode: connections set up with one reply when the hold began, the ones still open when it
    /// ended, and the ones the server closed in between.
    var established = 0
    var openAtEnd = 0
    var closedWhileHeld = 0
}

/// Monotonic time in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

struct BenchConnection {
    enum Phase {
        /// Closed; reconnect at `retryAt`.
        case closed
        case connecting
        /// TCP connected, TLS handshake under way.
        case handshaking
        /// Connected, no request in flight (the run is ending).
        case idle
        /// Connected, waiting for the scheduled send time of the next request (--rate).
        case waiting
        /// Connected with one reply read, kept open and idle (--hold).
        case held
        /// A request is being written or its reply awaited.
        case busy
    }

    var fd: Int32 = -1
    /// The TLS connection on `fd`, nil for plain connections.
    var ssl: OpaquePointer?
    /// The epoll interest last set on a TLS connection.
    var interest: UInt32 = 0
    /// Whether part of the request still waits to go through SSL_write.
    var writePending = false
    var connectedAt: UInt64 = 0
    var phase = Phase.closed
    var retryAt: UInt64 = 0
    var deadline: UInt64 = 0
    var request = 0
    var sendOffset = 0
    var sentAt: UInt64 = 0
    /// Whether the request in flight counts toward the results.
    var measured = false
    var inbox: [UInt8] = []
    /// Whether the slot's index is in the pacer's list of waiting connections.
    var isQueued = false
}

final class LoadWorker {
    private static let retryPause: UInt64 = 100_000_000
    /// Connections one thread sets up at the same time in hold mode.
    private static let maxHoldSetups = 64
    let plan: WorkerPlan
    let timeout: UInt64
    let measureEnd: UInt64?
    let epoll: Int32
    var connections: [BenchConnection]
    private var nextRequest: Int
    private var quotaStarted = 0
    /// The send schedule with --rate; nil without it.
    var pacer: Pacer?
    /// Monotonic nanoseconds when the hold began, in hold mode.
    var holdStartedAt: UInt64?
    /// Connections in the `.held` phase, in hold mode.
    var heldCount = 0
    /// Last successful connect or reply. The run gives up after twice the timeout plus a second
    /// without either, so that the requests in flight have timed out and been counted first.
    var lastProgress: UInt64 = 0
    var result = WorkerResult()
    var scratch = [UInt8](repeating: 0, count: 1 << 16)
    /// The last TLS session of each connection slot, offered again with --resume.
    fileprivate var sessions: [OpaquePointer?]
    static let readable = UInt32(truncatingIfNeeded: MC_EPOLLIN)
    static let writable = UInt32(truncatingIfNeeded: MC_EPOLLOUT)

    init(plan: WorkerPlan) {
        self.plan = plan
        timeout = UInt64(plan.options.timeout * 1e9)
        if case .duration(let seconds) = plan.options.stop {
            measureEnd = plan.measureStart + UInt64(seconds * 1e9)
        } else {
            measureEnd = nil
        }
        epoll = mc_epoll_create()
        precondition(epoll >= 0, "epoll_create1 failed: \(String(cString: strerror(errno)))")
        connections = Array(repeating: BenchConnection(), count: plan.connectionCount)
        sessions = Array(repeating: nil, count: plan.connectionCount)
        nextRequest = plan.index % plan.workload.requests.count
        if let rate = plan.options.rate {
            pacer = Pacer(rate: rate, threadIndex: plan.index, threadCount: plan.threadCount, epoll: epoll,
                          start: monotonicNanoseconds())
        }
    }

    deinit {
        for connection in connections {
            if let ssl = connection.ssl { SSL_free(ssl) }
            if connection.fd >= 0 { close(connection.fd) }
        }
        for case let session? in sessions { SSL_SESSION_free(session) }
        pacer?.closeTimer()
        close(epoll)
    }

    /// Runs until the duration ends or the quota of requests is done.
    func run() -> WorkerResult {
        var events = [mc_epoll_event](repeating: mc_epoll_event(), count: 256)
        var lastSweep: UInt64 = 0
        lastProgress = monotonicNanoseconds()
        while true {
            let now = monotonicNanoseconds()
            if plan.options.isHold { advanceHold(now) }
            if isFinished(now) { break }
            if holdStartedAt == nil, now - lastProgress > 2 * timeout + 1_000_000_000 {
                result.stalledAt = now
                if !plan.options.isHold { break }
            }
            if now - lastSweep >= 10_000_000 {
                sweep(now)
                lastSweep = now
            }
            let ready = events.withUnsafeMutableBufferPointer {
                mc_epoll_wait(epoll, $0.baseAddress, Int32($0.count), 10)
            }
            for event in events.prefix(Int(max(0, ready))) {
                if event.data == Pacer.timerToken {
                    pacer?.timerFired()
                } else {
                    handle(Int(event.data), events: event.events)
                }
            }
            if pacer != nil { dispatchDueRequests() }
        }
        if pacer != nil { countUnsentRequests(at: monotonicNanoseconds()) }
        if plan.options.isHold { finishHold() }
        return result
    }

    private func isFinished(_ now: UInt64) -> Bool {
        if case .hold(let seconds) = plan.options.stop {
            guard let holdStartedAt else { return false }
            return now >= holdStartedAt + UInt64(seconds * 1e9)
        }
        if let measureEnd { return now >= measureEnd }
        guard let quota = plan.requestQuota else { return false }
        return quotaStarted >= quota && !connections.contains { $0.phase == .busy && $0.measured }
    }

    var mayStartRequest: Bool {
        if plan.options.isHold { return holdStartedAt == nil }
        let now = monotonicNanoseconds()
        if let measureEnd { return now < measureEnd }
        guard let quota = plan.requestQuota else { return true }
        return now < plan.measureStart || quotaStarted < quota
    }

    /// Reconnects closed connections whose pause is over and fails requests past their deadline.
    private func sweep(_ now: UInt64) {
        // In hold mode a burst of thousands of handshakes would outlast the server's handshake timeout,
        // so each thread sets up at most `maxHoldSetups` connections at a time.
        var setupSlotsFree = Int.max
        if plan.options.isHold {
            let inSetup = connections.count { [.connecting, .handshaking, .busy].contains($0.phase) }
            setupSlotsFree = Self.maxHoldSetups - inSetup
        }
        for index in connections.indices {
            switch connections[index].phase {
            case .closed where now >= connections[index].retryAt && mayStartRequest && setupSlotsFree > 0:
                setupSlotsFree -= 1
                connect(index, now: now)
            case .connecting where now >= connections[index].deadline:
                fail(index, reason: "connect timed out after \(plan.options.timeout) s")
            case .handshaking where now >= connections[index].deadline:
                fail(index, reason: "TLS handshake timed out after \(plan.options.timeout) s")
            case .busy where now >= connections[index].deadline:
                fail(index, reason: "no reply within \(plan.options.timeout) s")
            default:
                break
            }
        }
    }

    private func connect(_ index: Int, now: UInt64) {
        switch plan.address.connectNonBlocking() {
        case .failure(let error):
            record(error: error.description)
            connections[index].retryAt = now + Self.retryPause
        case .success(let fd):
            connections[index].fd = fd
            connections[index].phase = .connecting
            connections[index].connectedAt = now
            connections[index].deadline = now + timeout
            connections[index].inbox.removeAll(keepingCapacity: true)
            let interest = UInt32(truncatingIfNeeded: MC_EPOLLIN) | UInt32(truncatingIfNeeded: MC_EPOLLOUT)
            if mc_epoll_ctl_add(epoll, fd, interest, UInt64(index)) != 0 {
                fail(index, reason: SystemError(call: "epoll_ctl", code: errno).description)
            }
        }
    }

    private func handle(_ index: Int, events: UInt32) {
        switch connections[index].phase {
        case .connecting:
            finishConnect(index)
        case .handshaking:
            continueHandshake(index)
        case .busy where connections[index].ssl != nil:
            // Errors and hang-ups too: SSL_read reports them after the records before them.
            if connections[index].writePending { writeTLSRequest(index) }
            if connections[index].phase == .busy && !connections[index].writePending { readTLSReply(index) }
        case .busy:
            if events & UInt32(truncatingIfNeeded: MC_EPOLLOUT) != 0, connections[index].sendOffset > 0 {
                writeRequest(index)
            }
            if connections[index].phase == .busy,
                events & (UInt32(truncatingIfNeeded: MC_EPOLLIN) | UInt32(truncatingIfNeeded: MC_EPOLLHUP)
                    | UInt32(truncatingIfNeeded: MC_EPOLLERR)) != 0
            {
                readReply(index)
            }
        case .idle, .waiting, .held:
            if connections[index].ssl != nil {
                // TLS 1.3 session tickets may arrive after the handshake; anything else is an error.
                readIdleTLS(index)
            } else {
                fail(index, reason: "data or close from the server with no request in flight")
            }
        case .closed:
            break
        }
    }

    private func finishConnect(_ index: Int) {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(connections[index].fd, SOL_SOCKET, SO_ERROR, &code, &length)
        if code != 0 {
            fail(index, reason: SystemError(call: "connect", code: code).description)
            return
        }
        let now = monotonicNanoseconds()
        if isMeasuring(now) { result.connections += 1 }
        if let tls = plan.tls {
            // Progress comes with the handshake, so a server that rejects every handshake stops the run.
            startHandshake(index, context: tls)
            return
        }
        lastProgress = now
        _ = mc_epoll_ctl_mod(epoll, connections[index].fd, Self.readable, UInt64(index))
        startRequest(index)
    }

    func isMeasuring(_ now: UInt64) -> Bool {
        now >= plan.measureStart && now < (measureEnd ?? UInt64.max)
    }

    /// Sends the next request now, or with --rate queues the connection for the next scheduled send time.
    func startRequest(_ index: Int) {
        guard mayStartRequest else {
            connections[index].phase = .idle
            return
        }
        if pacer != nil {
            connections[index].phase = .waiting
            enqueueWaiting(index)
            return
        }
        sendRequest(index, scheduledAt: monotonicNanoseconds())
    }

    /// Sends the next request of the file on the connection. Its latency runs from `scheduledAt`.
    func sendRequest(_ index: Int, scheduledAt: UInt64) {
        let now = monotonicNanoseconds()
        var measured = scheduledAt >= plan.measureStart
        if measured, let quota = plan.requestQuota {
            measured = quotaStarted < quota
            if measured { quotaStarted += 1 }
        }
        connections[index].phase = .busy
        connections[index].measured = measured
        connections[index].request = nextRequest
        connections[index].sendOffset = 0
        // With a new connection per request, latency runs from the connect to the reply.
        connections[index].sentAt = plan.options.newConnectionPerRequest ? connections[index].connectedAt : scheduledAt
        connections[index].deadline = now + timeout
        nextRequest = (nextRequest + plan.threadCount) % plan.workload.requests.count
        if connections[index].ssl != nil {
            connections[index].writePending = true
            writeTLSRequest(index)
        } else {
            writeRequest(index)
        }
    }

    private func writeRequest(_ index: Int) {
        let fd = connections[index].fd
        let offset = connections[index].sendOffset
        let sent = plan.workload.requests[connections[index].request].withUnsafeBytes { bytes in
            send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
        }
        if sent < 0 {
            if errno == EAGAIN || errno == EINTR { return }
            fail(index, reason: SystemError(call: "send", code: errno).description)
            return
        }
        connections[index].sendOffset += sent
        let done = connections[index].sendOffset == plan.workload.requests[connections[index].request].count
        var interest = UInt32(truncatingIfNeeded: MC_EPOLLIN)
        if !done { interest |= UInt32(truncatingIfNeeded: MC_EPOLLOUT) }
        if !done || offset > 0 {
            _ = mc_epoll_ctl_mod(epoll, fd, interest, UInt64(index))
        }
        if done { connections[index].sendOffset = 0 }
    }

    private func readReply(_ index: Int) {
        let fd = connections[index].fd
        let received = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if received == 0 {
            fail(index, reason: "connection closed by the server before the reply")
            return
        }
        if received < 0 {
            if errno == EAGAIN || errno == EINTR { return }
            fail(index, reason: SystemError(call: "recv", code: errno).description)
            return
        }
        connections[index].inbox.append(contentsOf: scratch[..<received])

        let outcome = connections[index].inbox.withUnsafeBytes { ReplyFraming.find(plan.options.wireProtocol, in: $0) }
        switch outcome {
        case .incomplete:
            return
        case .malformed:
            fail(index, reason: "malformed reply")
        case .reply(let text, let consumed):
            if consumed != connections[index].inbox.count {
                fail(index, reason: "bytes after the reply, with one request in flight")
                return
            }
            complete(index, text: text)
            connections[index].inbox.removeAll(keepingCapacity: true)
            nextStep(index)
        }
    }

    /// Starts the next request on the connection, or with a new connection per request closes it and connects again.
    func nextStep(_ index: Int) {
        if plan.options.isHold {
            holdConnection(index)
            return
        }
        guard plan.options.newConnectionPerRequest else {
            startRequest(index)
            return
        }
        closeConnection(index)
        if mayStartRequest {
            connect(index, now: monotonicNanoseconds())
        }
    }

    func complete(_ index: Int, text: Range<Int>) {
        let now = monotonicNanoseconds()
        lastProgress = now
        let connection = connections[index]
        guard connection.measured else { return }

        result.latencies.record(microseconds: (now - connection.sentAt) / 1000)
        result.completed += 1
        result.lastReply = now
        connection.inbox.withUnsafeBytes { bytes in
            var reply = UnsafeRawBufferPointer(rebasing: bytes[text])
            while reply.last == UInt8(ascii: " ") { reply = UnsafeRawBufferPointer(rebasing: reply.dropLast()) }
            result.replies.count(UnsafeRawBufferPointer(rebasing: bytes[text]))
            guard let expected = plan.workload.expected?[connection.request] else { return }
            if !expected.elementsEqual(reply) {
                result.mismatches += 1
                if result.mismatchSamples.count < 10 {
                    result.mismatchSamples.append(
                        (connection.request, String(decoding: expected, as: UTF8.self), String(decoding: reply, as: UTF8.self)))
                }
            }
        }
    }

    func fail(_ index: Int, reason: String) {
        record(error: reason)
        if connections[index].phase == .busy && connections[index].measured {
            result.failed += 1
        }
        if connections[index].phase == .held {
            heldCount -= 1
            if holdStartedAt != nil { result.closedWhileHeld += 1 }
        }
        if let ssl = connections[index].ssl {
            SSL_free(ssl)
            connections[index].ssl = nil
        }
        closeSocket(index)
        connections[index].retryAt = monotonicNanoseconds() + Self.retryPause
    }

    /// Closes a connection after its reply: keeps its TLS session for --resume and sends close_notify.
    func closeConnection(_ index: Int) {
        if let ssl = connections[index].ssl {
            if plan.options.resume, let session = SSL_get1_session(ssl) {
                if SSL_SESSION_is_resumable(session) == 1 {
                    if let old = sessions[index] { SSL_SESSION_free(old) }
                    sessions[index] = session
                } else {
                    SSL_SESSION_free(session)
                }
            }
            ERR_clear_error()
            _ = SSL_shutdown(ssl)
            ERR_clear_error()
            SSL_free(ssl)
            connections[index].ssl = nil
        }
        closeSocket(index)
    }

    func closeSocket(_ index: Int) {
        if connections[index].fd >= 0 {
            _ = mc_epoll_ctl_del(epoll, connections[index].fd)
            close(connections[index].fd)
        }
        connections[index].fd = -1
        connections[index].phase = .closed
        connections[index].measured = false
        connections[index].writePending = false
    }

    func record(error: String) {
        result.errors[error, default: 0] += 1
    }
}

// MARK: - TLS

extension LoadWorker {
    /// Creates the TLS connection on a connected socket, offering the slot's last session with --resume.
    fileprivate func startHandshake(_ index: Int, context: TLSClientContext) {
        let session = plan.options.resume ? sessions[index] : nil
        switch context.makeConnection(fd: connections[index].fd, session: session) {
        case .failure(let failure):
            fail(index, reason: failure.message)
        case .success(let ssl):
            connections[index].ssl = ssl
            connections[index].phase = .handshaking
            connections[index].interest = Self.readable | Self.writable
            continueHandshake(index)
        }
    }

    /// Advances the handshake; on completion counts it and starts the first request.
    fileprivate func continueHandshake(_ index: Int) {
        guard let ssl = connections[index].ssl else { return }
        ERR_clear_error()
        let status = SSL_connect(ssl)
        guard status == 1 else {
            switch SSL_get_error(ssl, status) {
            case SSL_ERROR_WANT_READ: setInterest(index, Self.readable)
            case SSL_ERROR_WANT_WRITE: setInterest(index, Self.readable | Self.writable)
            default: fail(index, reason: describeTLSFailure(ssl, result: status, during: "handshake"))
            }
            return
        }
        let now = monotonicNanoseconds()
        lastProgress = now
        if result.negotiated == nil {
            let cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "unknown cipher"
            result.negotiated = "\(String(cString: SSL_get_version(ssl))) \(cipher)"
        }
        if isMeasuring(now) {
            result.handshakes += 1
            if SSL_session_reused(ssl) == 1 { result.resumedHandshakes += 1 }
        }
        setInterest(index, Self.readable)
        startRequest(index)
    }

    func setInterest(_ index: Int, _ interest: UInt32) {
        guard connections[index].interest != interest else { return }
        connections[index].interest = interest
        _ = mc_epoll_ctl_mod(epoll, connections[index].fd, interest, UInt64(index))
    }

    /// Writes what is left of the request through SSL_write until it is sent or OpenSSL must wait.
    fileprivate func writeTLSRequest(_ index: Int) {
        guard let ssl = connections[index].ssl else { return }
        let request = connections[index].request
        let total = plan.workload.requests[request].count
        while connections[index].sendOffset < total {
            let offset = connections[index].sendOffset
            ERR_clear_error()
            let written = plan.workload.requests[request].withUnsafeBytes { bytes in
                SSL_write(ssl, bytes.baseAddress! + offset, Int32(clamping: total - offset))
            }
            if written > 0 {
                connections[index].sendOffset += Int(written)
                continue
            }
            switch SSL_get_error(ssl, written) {
            case SSL_ERROR_WANT_WRITE: setInterest(index, Self.readable | Self.writable)
            case SSL_ERROR_WANT_READ: setInterest(index, Self.readable)
            default: fail(index, reason: describeTLSFailure(ssl, result: written, during: "write"))
            }
            return
        }
        connections[index].sendOffset = 0
        connections[index].writePending = false
        setInterest(index, Self.readable)
    }

    /// Reads on a connection with no request in flight. TLS 1.3 session tickets are consumed there;
    /// application data or a close fails the connection.
    fileprivate func readIdleTLS(_ index: Int) {
        guard let ssl = connections[index].ssl else { return }
        ERR_clear_error()
        let received = scratch.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32(clamping: $0.count)) }
        if received > 0 {
            fail(index, reason: "data from the server with no request in flight")
            return
        }
        switch SSL_get_error(ssl, received) {
        case SSL_ERROR_WANT_READ: setInterest(index, Self.readable)
        case SSL_ERROR_WANT_WRITE: setInterest(index, Self.readable | Self.writable)
        case SSL_ERROR_ZERO_RETURN: fail(index, reason: "connection closed by the server with no request in flight")
        default: fail(index, reason: describeTLSFailure(ssl, result: received, during: "read with no request in flight"))
        }
    }

    /// Reads records until the reply is complete or OpenSSL needs more bytes from the socket.
    /// It reads on after a record, because OpenSSL may hold decrypted data that epoll never reports.
    func readTLSReply(_ index: Int) {
        guard let ssl = connections[index].ssl else { return }
        while true {
            ERR_clear_error()
            let received = scratch.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32(clamping: $0.count)) }
            if received <= 0 {
                switch SSL_get_error(ssl, received) {
                case SSL_ERROR_WANT_READ: setInterest(index, Self.readable)
                case SSL_ERROR_WANT_WRITE: setInterest(index, Self.readable | Self.writable)
                default: fail(index, reason: describeTLSFailure(ssl, result: received, during: "read"))
                }
                return
            }
            connections[index].inbox.append(contentsOf: scratch[..<Int(received)])
            let outcome = connections[index].inbox.withUnsafeBytes {
                ReplyFraming.find(plan.options.wireProtocol, in: $0)
            }
            switch outcome {
            case .incomplete:
                continue
            case .malformed:
                fail(index, reason: "malformed reply")
                return
            case .reply(let text, let consumed):
                if consumed != connections[index].inbox.count || SSL_pending(ssl) > 0 {
                    fail(index, reason: "bytes after the reply, with one request in flight")
                    return
                }
                complete(index, text: text)
                connections[index].inbox.removeAll(keepingCapacity: true)
                nextStep(index)
                return
            }
        }
    }
}
