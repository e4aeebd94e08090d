// A fixed set of threads for blocking work (libcurl, libpq), fed by a bounded
// queue. When the queue is full, `submit` returns false at once and the
// caller answers with the protocol's temporary failure instead of waiting.
import CShim
#if canImport(Glibc)
import Glibc
#endif

/// Threads that run blocking jobs from a bounded FIFO queue.
///
/// `@unchecked Sendable` because the queue and flags are guarded by `mutex`,
/// a heap-allocated pthread mutex that never moves.
public final class WorkerPool: @unchecked Sendable {
    public let threadCount: Int
    public let queueLimit: Int
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var jobs: [(@Sendable () -> Void)?] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []

    public init(threads: Int, queueLimit: Int) {
        precondition(threads > 0 && queueLimit > 0, "a worker pool needs at least one thread and one queue slot")
        threadCount = threads
        self.queueLimit = queueLimit
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for index in 0..<threads {
            self.threads.append(startThread(name: "mc-worker-\(index)") { [self] in runWorker() })
        }
    }


    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Jobs waiting for a thread.
    public var queuedCount: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return jobs.count - head
    }

    /// Queues `job`; returns false without queueing when the queue is full or the pool stopped.
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        pthread_mutex_lock(mutex)
        guard !stopping, jobs.count - head < queueLimit else {
            pthread_mutex_unlock(mutex)
            return false
        }
        jobs.append(job)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
        return true
    }

    /// Lets queued jobs finish, then stops and joins every thread.
    public func shutdown() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
    }

    private func runWorker() {
        while let job = nextJob() {
            job()
        }
    }

    private func nextJob() -> (@Sendable () -> Void)? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while head == jobs.count {
            if stopping { return nil }
            pthread_cond_wait(condition, mutex)
        }
        let job = jobs[head]
        jobs[head] = nil
        head += 1
        if head > 1024 && head * 2 > jobs.count {
            jobs.removeFirst(head)
            head = 0
        }
        return job
    }
}

private final class ThreadBody {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Starts a joinable pthread named `name` (truncated to 15 bytes) running `body`.
public func startThread(name: String, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let status = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    precondition(status == 0, "pthread_create failed with \(status)")
    _ = mc_set_thread_name(thread, String(name.utf8.prefix(15))!)
    return thread
}
