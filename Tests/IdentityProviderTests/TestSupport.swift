import Foundation
import Log
import Synchronization

@testable import IdentityProvider

// Helpers shared by the identity-provider tests: a clock tests move by
// hand, a quiet logger, threads that run side by side, and JWT building.
#if canImport(Glibc)
    import Glibc
#endif

/// A monotonic clock that moves only when a test advances it.
final class ManualClock: Sendable {
    private let now = Atomic<UInt64>(1_000_000_000_000)

    var read: MonotonicClock {
        { self.now.load(ordering: .relaxed) }
    }

    func advance(seconds: Double) {
        now.add(UInt64(seconds * 1e9), ordering: .relaxed)
    }
}

/// A logger that writes to /dev/null, so that expected warnings do not
/// clutter the test output.
let quietLogger = Logger(fileDescriptor: open("/dev/null", O_WRONLY | O_CLOEXEC))

/// Runs `body(index)` on `count` threads at once and waits for all of them.
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.start()
    }
    group.wait()
}

/// Polls `condition` every 5 ms until it is true or `seconds` pass.
func waitUntil(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    for _ in 0..<Int(seconds * 200) {
        if condition() { return true }
        usleep(5000)
    }
    return condition()
}

/// Builds an unsigned JWT-shaped token whose payload is `payloadJSON`.
func makeJWT(payloadJSON: String) -> String {
    func encode(_ text: String) -> String {
        Data(text.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
    return encode(#"{"alg":"HS256","typ":"JWT"}"#) + "." + encode(payloadJSON) + ".c2lnbmF0dXJl"
}

/// Collects values from several threads.
final class Collector<Value: Sendable>: @unchecked Sendable {
    // NSLock instead of Synchronization.Mutex: the thread sanitizer does not
    // see the lock of a generic Mutex whose code is not specialized, and
    // reports a race on every append. @unchecked: `storage` is only touched
    // with `lock` held.
    private let lock = NSLock()
    private var storage: [Value] = []

    func append(_ value: Value) {
        lock.withLock { storage.append(value) }
    }

    var values: [Value] {
        lock.withLock { storage }
    }
}
