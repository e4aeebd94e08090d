import Foundation
import RedisCache

// Starts a throwaway redis-server on 127.0.0.1 for tests, through
// posix_spawn with a clean signal mask (Foundation's Process passes its
// blocked mask on, and redis-server would then ignore SIGTERM), and stops
// it by process id. Redis has no port 0, so a random port below 32768 is
// tried until one is free.
#if canImport(Glibc)
    import Glibc
#endif

package enum RedisTestServerError: Error {
    case startFailed(String)
}

package final class RedisTestServer: @unchecked Sendable {
    // @unchecked: `pid` changes only in start/stop, which tests call from one thread.
    package private(set) var port: Int
    private var pid: pid_t = 0
    private let directory: String

    private let extraArguments: [String]

    package init(extraArguments: [String] = []) throws {
        self.extraArguments = extraArguments
        directory = NSTemporaryDirectory() + "mailcloak-redis-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = 0
        for _ in 0..<20 {
            port = Int.random(in: 20_000..<32_000)
            if try start() { return }
        }
        throw RedisTestServerError.startFailed("no free port after 20 tries")
    }

    /// Starts a sentinel that monitors `primary` under the name `master`.
    package convenience init(sentinelFor primary: RedisTestServer, master: String) throws {
        try self.init(configuration: { port, directory in
            "port \(port)\nbind 127.0.0.1\ndir \(directory)\nsentinel monitor \(master) 127.0.0.1 \(primary.port) 1\n"
        })
    }

    /// Starts `redis-server FILE --sentinel` with the configuration that `configuration(port, directory)` returns.
    private init(configuration: (Int, String) -> String) throws {
        directory = NSTemporaryDirectory() + "mailcloak-sentinel-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = 0
        extraArguments = []
        for _ in 0..<20 {
            port = Int.random(in: 20_000..<32_000)
            let file = directory + "/sentinel.conf"
            try configuration(port, directory).write(toFile: file, atomically: true, encoding: .utf8)
            if try start(arguments: ["/usr/bin/redis-server", file, "--sentinel"]) { return }
        }
        throw RedisTestServerError.startFailed("no free port after 20 tries")
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    package var endpoint: RedisEndpoint {
        RedisEndpoint(host: "127.0.0.1", port: port, connectTimeout: 0.5, commandTimeout: 0.5)
    }

    /// Starts redis-server on `port`; false when the port was taken.
    @discardableResult
    package func start() throws -> Bool {
        try start(arguments: [
            "/usr/bin/redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", directory, "--logfile", directory + "/redis.log",
        ] + extraArguments)
    }

    private func start(arguments: [String]) throws -> Bool {

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGHUP, SIGINT, SIGPIPE, SIGTERM, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)

        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, arguments[0], &actions, &attributes, argv, environ)
        guard status == 0 else { throw RedisTestServerError.startFailed(String(cString: strerror(status))) }
        pid = child

        for _ in 0..<400 {
            // A server started with --requirepass replies NOAUTH, which also proves it is up.
            switch try? RedisConnection(endpoint).command(["PING"]) {
            case .status("PONG"): return true
            case .error(let message) where message.hasPrefix("NOAUTH"): return true
            default: break
            }
            var waitStatus: Int32 = 0
            if waitpid(child, &waitStatus, WNOHANG) == child {
                pid = 0
                return false
            }
            usleep(10_000)
        }
        stop()
        throw RedisTestServerError.startFailed("redis-server on port \(port) did not answer PING")
    }

    /// Kills the server (SIGKILL, as a crash would) and reaps it.
    package func kill() {
        guard pid != 0 else { return }
        Glibc.kill(pid, SIGKILL)
        var waitStatus: Int32 = 0
        waitpid(pid, &waitStatus, 0)
        pid = 0
    }

    /// Pauses the server (SIGSTOP), so that it accepts connections but sends no reply.
    package func pause() {
        if pid != 0 { Glibc.kill(pid, SIGSTOP) }
    }

    /// Lets a paused server run again (SIGCONT).
    package func resume() {
        if pid != 0 { Glibc.kill(pid, SIGCONT) }
    }

    /// Stops the server with SIGTERM and reaps it.
    package func stop() {
        guard pid != 0 else { return }
        Glibc.kill(pid, SIGTERM)
        var waitStatus: Int32 = 0
        for _ in 0..<500 {
            if waitpid(pid, &waitStatus, WNOHANG) == pid {
                pid = 0
                return
            }
            usleep(10_000)
        }
        kill()
    }

    /// Sends one command on a new connection.
    package func command(_ arguments: [String]) throws -> RedisReply {
        try RedisConnection(endpoint).command(arguments)
    }
}
