// One load thread: an epoll loop driving its share of the connections, each
// with one request outstanding at a time, as Postfix does. Every connect and
// every request has a deadline; a connection that fails is closed, counted
// and reconnected after a short pause.

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
    /// Monotonic nanoseconds when measuring starts (after the warmup).
    var measureStart: UInt64
    /// Requests this thread measures, in `--requests` mode.
    var requestQuota: Int?
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
}

/// Monotonic time in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

private struct BenchConnection {
    enum Phase {
        /// Closed; reconnect at `retryAt`.
        case closed
        case connecting
        /// Connected, no request in flight (the run is ending).
        case idle
        /// A request is being written or its reply awaited.
        case busy
    }

    var fd: Int32 = -1
    var phase = Phase.closed
    var retryAt: UInt64 = 0
    var deadline: UInt64 = 0
    var request = 0
    var sendOffset = 0
    var sentAt: UInt64 = 0
    /// Whether the request in flight counts toward the results.
    var measured = false
    var inbox: [UInt8] = []
}

final class LoadWorker {
    private static let retryPause: UInt64 = 100_000_000
    private let plan: WorkerPlan
    private let timeout: UInt64
    private let measureEnd: UInt64?
    private let epoll: Int32
    private var connections: [BenchConnection]
    private var nextRequest: Int
    private var quotaStarted = 0
    /// Last successful connect or reply. The run gives up after twice the timeout plus a second
    /// without either, so that the requests in flight have timed out and been counted first.
    private var lastProgress: UInt64 = 0
    private var result = WorkerResult()
    private var scratch = [UInt8](repeating: 0, count: 1 << 16)

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
        nextRequest = plan.index % plan.workload.requests.count
    }

    deinit {
        for connection in connections where connection.fd >= 0 { close(connection.fd) }
        close(epoll)
    }

    /// Runs until the duration ends or the quota of requests is done.
    func run() -> WorkerResult {
        var events = [mc_epoll_event](repeating: mc_epoll_event(), count: 256)
        var lastSweep: UInt64 = 0
        lastProgress = monotonicNanoseconds()
        while true {
            let now = monotonicNanoseconds()
            if isFinished(now) { break }
            if now - lastProgress > 2 * timeout + 1_000_000_000 {
                result.stalledAt = now
                break
            }
            if now - lastSweep >= 10_000_000 {
                sweep(now)
                lastSweep = now
            }
            let ready = events.withUnsafeMutableBufferPointer {
                mc_epoll_wait(epoll, $0.baseAddress, Int32($0.count), 10)
            }
            for event in events.prefix(Int(max(0, ready))) {
                handle(Int(event.data), events: event.events)
            }
        }
        return result
    }

    private func isFinished(_ now: UInt64) -> Bool {
        if let measureEnd { return now >= measureEnd }
        guard let quota = plan.requestQuota else { return false }
        return quotaStarted >= quota && !connections.contains { $0.phase == .busy && $0.measured }
    }

    private var mayStartRequest: Bool {
        let now = monotonicNanoseconds()
        if let measureEnd { return now < measureEnd }
        guard let quota = plan.requestQuota else { return true }
        return now < plan.measureStart || quotaStarted < quota
    }

    /// Reconnects closed connections whose pause is over and fails requests past their deadline.
    private func sweep(_ now: UInt64) {
        for index in connections.indices {
            switch connections[index].phase {
            case .closed where now >= connections[index].retryAt && mayStartRequest:
                connect(index, now: now)
            case .connecting where now >= connections[index].deadline:
                fail(index, reason: "connect timed out after \(plan.options.timeout) s")
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
        case .idle:
            fail(index, reason: "data or close from the server with no request in flight")
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
        _ = mc_epoll_ctl_mod(epoll, connections[index].fd, UInt32(truncatingIfNeeded: MC_EPOLLIN), UInt64(index))
        lastProgress = monotonicNanoseconds()
        startRequest(index)
    }

    private func startRequest(_ index: Int) {
        guard mayStartRequest else {
            connections[index].phase = .idle
            return
        }
        let now = monotonicNanoseconds()
        var measured = now >= plan.measureStart
        if measured, let quota = plan.requestQuota {
            measured = quotaStarted < quota
            if measured { quotaStarted += 1 }
        }
        connections[index].phase = .busy
        connections[index].measured = measured
        connections[index].request = nextRequest
        connections[index].sendOffset = 0
        connections[index].sentAt = now
        connections[index].deadline = now + timeout
        nextRequest = (nextRequest + plan.threadCount) % plan.workload.requests.count
        writeRequest(index)
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
            startRequest(index)
        }
    }

    private func complete(_ index: Int, text: Range<Int>) {
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

    private func fail(_ index: Int, reason: String) {
        record(error: reason)
        if connections[index].phase == .busy && connections[index].measured {
            result.failed += 1
        }
        if connections[index].fd >= 0 {
            _ = mc_epoll_ctl_del(epoll, connections[index].fd)
            close(connections[index].fd)
        }
        connections[index].fd = -1
        connections[index].phase = .closed
        connections[index].measured = false
        connections[index].retryAt = monotonicNanoseconds() + Self.retryPause
    }

    private func record(error: String) {
        result.errors[error, default: 0] += 1
    }
}
