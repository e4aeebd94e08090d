// Open-loop pacing for --rate. Each thread takes an even share of the rate
// and schedules its sends at start + k × interval. A connection that has its
// reply waits in a queue. When a send time comes, the request goes out on the
// connection that has waited longest, and its latency runs from the scheduled
// time. A server stall therefore adds to the latency of every request
// scheduled during it, instead of slowing the load down (no coordinated
// omission). A timerfd wakes the loop at the next send time.

import CShim
#if canImport(Glibc)
import Glibc
#endif

/// One thread's send schedule and the connections waiting for it.
struct Pacer {
    /// The epoll token of the timer; connection tokens are their indices, at most 100,000.
    static let timerToken = UInt64(UInt32.max)

    /// Nanoseconds between this thread's scheduled sends.
    let interval: Double
    /// Monotonic nanoseconds of this thread's first scheduled send.
    let start: UInt64
    /// Requests sent so far; the next one is scheduled at `start + sent × interval`.
    var sent: UInt64 = 0
    /// Connections waiting for a send time, oldest first from `waitingHead`. Each connection has at
    /// most one entry (`BenchConnection.isQueued`), so the queue contains at most one entry per connection
    /// plus the consumed prefix, which `popWaiting` trims.
    private var waiting: [Int] = []
    private var waitingHead = 0
    private let timer: Int32
    /// The absolute time the timer is set to, or 0 when it is not set.
    private var armedFor: UInt64 = 0
    private let setTime: TimerSetTime

    /// Creates the schedule of thread `threadIndex` and registers its timer with `epoll`.
    /// The threads' schedules are offset so that together they send evenly.
    init(rate: Double, threadIndex: Int, threadCount: Int, epoll: Int32, start: UInt64) {
        interval = Double(threadCount) * 1e9 / rate
        self.start = start + UInt64(Double(threadIndex) * 1e9 / rate)
        let functions = TimerFunctions.lookUp()
        setTime = functions.setTime
        timer = functions.create(CLOCK_MONOTONIC, O_NONBLOCK | O_CLOEXEC)
        precondition(timer >= 0, "timerfd_create failed: \(String(cString: strerror(errno)))")
        let added = mc_epoll_ctl_add(epoll, timer, UInt32(truncatingIfNeeded: MC_EPOLLIN), Self.timerToken)
        precondition(added == 0, "epoll_ctl on the timerfd failed: \(String(cString: strerror(errno)))")
    }

    /// Monotonic nanoseconds at which the next request is due.
    var nextSendTime: UInt64 { start + UInt64(Double(sent) * interval) }

    /// The number of requests due by `time`, sent or not.
    func dueCount(by time: UInt64) -> UInt64 {
        guard time >= start else { return 0 }
        return UInt64((Double(time - start) / interval).rounded(.down)) + 1
    }

    var hasWaiting: Bool { waitingHead < waiting.count }

    mutating func pushWaiting(_ index: Int) {
        waiting.append(index)
    }

    mutating func popWaiting() -> Int {
        let index = waiting[waitingHead]
        waitingHead += 1
        if waitingHead == waiting.count {
            waiting.removeAll(keepingCapacity: true)
            waitingHead = 0
        } else if waitingHead >= 1024 && waitingHead * 2 >= waiting.count {
            waiting.removeFirst(waitingHead)
            waitingHead = 0
        }
        return index
    }

    /// Sets the timer to fire at the monotonic time `time`, in nanoseconds.
    mutating func arm(at time: UInt64) {
        guard armedFor != time else { return }
        var value = itimerspec()
        value.it_value = timespec(tv_sec: Int(time / 1_000_000_000), tv_nsec: Int(time % 1_000_000_000))
        let status = setTime(timer, TimerFunctions.absoluteTime, &value, nil)
        precondition(status == 0, "timerfd_settime failed: \(String(cString: strerror(errno)))")
        armedFor = time
    }

    /// Reads the expiry count, so that the level-triggered timer stops reporting.
    mutating func timerFired() {
        var expirations: UInt64 = 0
        _ = read(timer, &expirations, MemoryLayout<UInt64>.size)
        armedFor = 0
    }

    func closeTimer() {
        close(timer)
    }
}

extension LoadWorker {
    /// Puts a connection that has its reply into the queue for the next send time.
    func enqueueWaiting(_ index: Int) {
        guard !connections[index].isQueued else { return }
        connections[index].isQueued = true
        pacer?.pushWaiting(index)
    }

    /// Sends every request whose time has come on the connections that wait, oldest first,
    /// then sets the timer for the next send time if a connection is still waiting.
    func dispatchDueRequests() {
        guard pacer != nil else { return }
        var now = monotonicNanoseconds()
        while mayStartRequest, pacer!.hasWaiting {
            let scheduled = pacer!.nextSendTime
            if scheduled > now {
                now = monotonicNanoseconds()
                if scheduled > now {
                    pacer!.arm(at: scheduled)
                    return
                }
            }
            let index = pacer!.popWaiting()
            connections[index].isQueued = false
            // A connection that failed while it waited has left the `.waiting` phase.
            guard connections[index].phase == .waiting else { continue }
            pacer!.sent += 1
            sendRequest(index, scheduledAt: scheduled)
        }
    }

    /// Counts the requests that were due before the measured time ended but never sent.
    func countUnsentRequests(at now: UInt64) {
        guard let pacer, let measureEnd else { return }
        let due = pacer.dueCount(by: min(now, measureEnd - 1))
        result.scheduledUnsent = Int(due > pacer.sent ? due - pacer.sent : 0)
    }
}

/// timerfd_create and timerfd_settime, which Swift's Glibc module does not import
/// (it lacks <sys/timerfd.h>), looked up in the C library at run time.
private struct TimerFunctions {
    typealias Create = @convention(c) (Int32, Int32) -> Int32

    /// TFD_TIMER_ABSTIME from <sys/timerfd.h>: the time is absolute on the timer's clock.
    static let absoluteTime: Int32 = 1

    let create: Create
    let setTime: TimerSetTime

    static func lookUp() -> TimerFunctions {
        let program = dlopen(nil, RTLD_NOW)
        guard let create = dlsym(program, "timerfd_create"), let setTime = dlsym(program, "timerfd_settime") else {
            preconditionFailure("timerfd_create or timerfd_settime not found in the C library")
        }
        return TimerFunctions(create: unsafeBitCast(create, to: Create.self),
                              setTime: unsafeBitCast(setTime, to: TimerSetTime.self))
    }
}

typealias TimerSetTime = @convention(c) (
    Int32, Int32, UnsafePointer<itimerspec>?, UnsafeMutablePointer<itimerspec>?
) -> Int32
