// mailcloak-bench: a load generator for Postfix policy and socketmap servers.
// Each connection keeps one request outstanding, as a Postfix process does,
// and requests go round-robin over a file. It reports throughput, latency
// percentiles and a count of each distinct reply, and with --expect-file
// checks every reply. With --tls every connection runs mutual TLS, and with
// --new-connection-per-request it measures connects and handshakes per second.
// With --rate it sends at scheduled times (open loop), and with --hold it keeps
// idle connections open.
// The usage text in BenchOptions.swift lists the options.

import Locking
#if canImport(Glibc)
import Glibc
#endif

func writeError(_ text: String) {
    let line = text + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

func exitWithUsage(_ error: BenchUsageError) -> Never {
    if !error.message.isEmpty { writeError("mailcloak-bench: \(error.message)") }
    writeError(BenchOptions.usage)
    exit(2)
}

/// Collects the threads' results.
final class ResultSink: Sendable {
    let results = Locked<[WorkerResult]>([])
}

private final class ThreadBody {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Starts a joinable pthread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let status = pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, context)
    precondition(status == 0, "pthread_create failed with \(status)")
    return thread
}

/// Raises the soft limit on open files to `needed`, up to the hard limit; exits when the hard limit is lower.
func raiseDescriptorLimit(needed: Int) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(needed) else { return }
    guard limit.rlim_max >= rlim_t(needed) else {
        writeError("mailcloak-bench: \(needed) file descriptors needed, but the hard limit (ulimit -Hn) is "
            + "\(limit.rlim_max); raise it or use fewer connections")
        exit(2)
    }
    limit.rlim_cur = rlim_t(needed)
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
        writeError("mailcloak-bench: setrlimit(RLIMIT_NOFILE, \(needed)) failed: \(String(cString: strerror(errno)))")
        exit(2)
    }
}

signal(SIGPIPE, SIG_IGN)

let options: BenchOptions
switch BenchOptions.parse(Array(CommandLine.arguments.dropFirst())) {
case .success(let parsed): options = parsed
case .failure(let error): exitWithUsage(error)
}

let workload: Workload
switch Workload.load(options) {
case .success(let loaded): workload = loaded
case .failure(let error): exitWithUsage(error)
}

let address: TargetAddress
switch TargetAddress.resolve(options.target) {
case .success(let resolved): address = resolved
case .failure(let error): exitWithUsage(error)
}

var tlsContext: TLSClientContext?
if let files = options.tls {
    switch TLSClientContext.load(files) {
    case .success(let loaded): tlsContext = loaded
    case .failure(let error):
        writeError("mailcloak-bench: \(error.message)")
        exit(2)
    }
}

raiseDescriptorLimit(needed: options.connections + 64)

let start = monotonicNanoseconds()
let measureStart = start + UInt64(options.warmup * 1e9)
let sink = ResultSink()
var threads: [pthread_t] = []
var holdProgress: HoldProgress?
if case .hold(let seconds) = options.stop {
    holdProgress = HoldProgress(threadCount: options.threads, connectionCount: options.connections, seconds: seconds)
}

for index in 0..<options.threads {
    var quota: Int?
    if case .requests(let count) = options.stop {
        quota = count / options.threads + (index < count % options.threads ? 1 : 0)
    }
    let plan = WorkerPlan(
        index: index, threadCount: options.threads,
        connectionCount: options.connections / options.threads + (index < options.connections % options.threads ? 1 : 0),
        options: options, workload: workload, address: address, tls: tlsContext, measureStart: measureStart, requestQuota: quota,
        holdProgress: holdProgress)
    threads.append(startThread {
        let result = LoadWorker(plan: plan).run()
        sink.results.withLock { $0.append(result) }
    })
}
for thread in threads { pthread_join(thread, nil) }

let report = Report(options: options, results: sink.results.withLock { $0 }, measureStart: measureStart)
let text = report.text
_ = text.withCString { write(1, $0, strlen($0)) }
exit(report.exitStatus)
