// The target's socket address, resolved once, and non-blocking connects to it.

import CShim
#if canImport(Glibc)
import Glibc
#endif

/// A resolved socket address that connections reuse.
struct TargetAddress: Sendable {
    private var storage = sockaddr_storage()
    private var length: socklen_t = 0
    private(set) var family: Int32 = 0

    /// Resolves `target`; returns an error message when it cannot.
    static func resolve(_ target: BenchOptions.Target) -> Result<TargetAddress, BenchUsageError> {
        var address = TargetAddress()
        switch target {
        case .unix(let path):
            var unixAddress = sockaddr_un()
            unixAddress.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &unixAddress.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
            withUnsafeMutableBytes(of: &address.storage) { storage in
                withUnsafeBytes(of: &unixAddress) { storage.copyMemory(from: $0) }
            }
            address.length = socklen_t(MemoryLayout<sockaddr_un>.size)
            address.family = AF_UNIX
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_NUMERICSERV
            var results: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, String(port), &hints, &results)
            guard status == 0, let first = results else {
                return .failure(BenchUsageError(message: "cannot resolve \(target): \(String(cString: gai_strerror(status)))"))
            }
            defer { freeaddrinfo(results) }
            withUnsafeMutableBytes(of: &address.storage) { storage in
                storage.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
            }
            address.length = first.pointee.ai_addrlen
            address.family = first.pointee.ai_family
        }
        return .success(address)
    }

    /// Starts a non-blocking connect; returns the socket, or the errno of the failure.
    func connectNonBlocking() -> Result<Int32, SystemError> {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(SystemError(call: "socket", code: errno)) }
        if family != AF_UNIX {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        var storage = self.storage
        let status = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        if status != 0 && errno != EINPROGRESS {
            let code = errno
            close(fd)
            return .failure(SystemError(call: "connect", code: code))
        }
        return .success(fd)
    }
}

/// A failed system call and its errno.
struct SystemError: Error, Hashable, Sendable, CustomStringConvertible {
    var call: String
    var code: Int32

    var description: String { "\(call): \(String(cString: strerror(code)))" }
}
