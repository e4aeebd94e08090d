// The epoll backend of the event loop: registration and waiting, nothing
// else. Level-triggered, so a handler that leaves bytes unread is woken again.
import CShim
#if canImport(Glibc)
import Glibc
#endif

/// Interest in readiness of one descriptor.
public struct IOInterest: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let read = IOInterest(rawValue: UInt32(truncatingIfNeeded: MC_EPOLLIN) | UInt32(truncatingIfNeeded: MC_EPOLLRDHUP))
    public static let write = IOInterest(rawValue: UInt32(truncatingIfNeeded: MC_EPOLLOUT))
    /// Readiness to accept; EPOLLEXCLUSIVE does not combine with EPOLLRDHUP.
    static let accept = IOInterest(rawValue: UInt32(truncatingIfNeeded: MC_EPOLLIN))
}

/// An epoll instance owned by one event loop thread.
final class EpollSelector {
    let descriptor: Int32
    private var events: [mc_epoll_event]

    init(capacity: Int = 256) throws(ReactorError) {
        descriptor = mc_epoll_create()
        guard descriptor >= 0 else { throw .systemCall("epoll_create1", errno) }
        events = Array(repeating: mc_epoll_event(), count: capacity)
    }

    deinit { Glibc.close(descriptor) }

    func add(_ fd: Int32, interest: IOInterest, token: UInt64, exclusive: Bool = false) throws(ReactorError) {
        let flags = interest.rawValue | (exclusive ? UInt32(truncatingIfNeeded: MC_EPOLLEXCLUSIVE) : 0)
        guard mc_epoll_ctl_add(descriptor, fd, flags, token) == 0 else { throw .systemCall("epoll_ctl(ADD)", errno) }
    }

    func modify(_ fd: Int32, interest: IOInterest, token: UInt64) {
        // A failure here means the descriptor is already closed; the close path cleans up.
        _ = mc_epoll_ctl_mod(descriptor, fd, interest.rawValue, token)
    }

    func remove(_ fd: Int32) {
        _ = mc_epoll_ctl_del(descriptor, fd)
    }

    /// Waits up to `timeoutMilliseconds` and calls `body` with each ready token and its event bits.
    func wait(timeoutMilliseconds: Int32, _ body: (UInt64, UInt32) -> Void) {
        let count = events.withUnsafeMutableBufferPointer { buffer in
            mc_epoll_wait(descriptor, buffer.baseAddress, Int32(buffer.count), timeoutMilliseconds)
        }
        guard count > 0 else { return }
        for index in 0..<Int(count) {
            body(events[index].data, events[index].events)
        }
    }
}

/// Failures of the server loop's system calls.
public enum ReactorError: Error, CustomStringConvertible, Equatable {
    case systemCall(String, Int32)
    case invalidAddress(String)
    case addressInUse(String)
    case unixSocketPathTooLong(String)
    case unknownUser(String)
    case unknownGroup(String)
    case tls(String)
    /// `server.user` or `server.group` could not be applied; the text names the step and the reason.
    case privilegeDropFailed(String)

    public var description: String {
        switch self {
        case .systemCall(let call, let code): "\(call) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .invalidAddress(let text): "invalid listen address: \(text)"
        case .addressInUse(let text): "address already in use: \(text)"
        case .unixSocketPathTooLong(let path): "UNIX socket path is longer than 107 bytes: \(path)"
        case .unknownUser(let name): "unknown user for socket owner: \(name)"
        case .unknownGroup(let name): "unknown group for socket group: \(name)"
        case .tls(let text): "TLS setup failed: \(text)"
        case .privilegeDropFailed(let text): "dropping privileges failed: \(text)"
        }
    }
}
