// Listening sockets: TCP on IPv4 or IPv6, and UNIX stream sockets with the
// owner, group and mode that a Postfix chroot needs. Bound at start, before
// any thread runs, so that a bad address fails the start with its reason.
import Config
import Log
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a connection knows about the listener that accepted it.
public struct ListenerInfo: Sendable, Equatable {
    public var name: String
    public var services: Set<ServiceKind>
    public var isUnix: Bool
    /// The bound address, with the real port when the configuration gave port 0.
    public var boundAddress: String
}

/// A bound, listening, non-blocking socket.
public final class ListeningSocket: Sendable {
    public let descriptor: Int32
    public let info: ListenerInfo
    /// The TCP port actually bound, or nil for a UNIX socket.
    public let port: UInt16?
    /// TLS, access rules and PROXY balancers; nil on a plain listener without rules.
    public let security: ListenerSecurity?

    private let isClosed = Atomic<Bool>(false)

    private init(descriptor: Int32, info: ListenerInfo, port: UInt16?, security: ListenerSecurity?) {
        self.descriptor = descriptor
        self.info = info
        self.port = port
        self.security = security
    }

    deinit { close() }

    /// Closes the socket, so that new connections to it are refused; later calls do nothing.
    /// Call it only once no thread accepts from it any more. A UNIX socket's file stays.
    public func close() {
        if !isClosed.exchange(true, ordering: .acquiringAndReleasing) {
            Glibc.close(descriptor)
        }
    }

    /// Binds and listens as `config` says.
    /// Loads the listener's TLS material first, so a bad certificate fails before the bind.
    public static func bind(_ config: ListenerConfig, backlog: Int32 = 1024, logger: Logger = .shared)
        throws(ReactorError) -> ListeningSocket
    {
        var security: ListenerSecurity?
        if config.tls != nil || config.acl != nil || !config.proxyProtocolFrom.isEmpty {
            do throws(TLSError) {
                security = try ListenerSecurity(config: config, logger: logger)
            } catch {
                throw .tls("listener \(config.name): \(error.message)")
            }
        }
        switch config.address {
        case .tcp(let host, let port):
            return try bindTCP(config, host: host, port: port, backlog: backlog, security: security)
        case .unix(let path):
            return try bindUnix(config, path: path, backlog: backlog, security: security)
        }
    }

    private static func bindTCP(
        _ config: ListenerConfig, host: String, port: UInt16, backlog: Int32, security: ListenerSecurity?
    )
        throws(ReactorError) -> ListeningSocket
    {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &results)
        guard status == 0, let first = results else {
            throw .invalidAddress("\(config.address): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(results) }
        let family = first.pointee.ai_family
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
            | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .systemCall("socket", errno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if family == AF_INET6 {
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        guard Glibc.bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let code = errno
            Glibc.close(fd)
            if code == EADDRINUSE { throw .addressInUse(config.address.description) }
            throw .systemCall("bind \(config.address)", code)
        }
        guard listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw .systemCall("listen", code)
        }
        let boundPort = localPort(fd)
        let shownHost = family == AF_INET6 ? "[\(host)]" : host
        let info = ListenerInfo(
            name: config.name, services: config.services, isUnix: false, boundAddress: "tcp:\(shownHost):\(boundPort)")
        return ListeningSocket(descriptor: fd, info: info, port: boundPort, security: security)
    }

    private static func bindUnix(
        _ config: ListenerConfig, path: String, backlog: Int32, security: ListenerSecurity?
    )
        throws(ReactorError) -> ListeningSocket
    {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw .unixSocketPathTooLong(path)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: pathBytes)
        }
        try removeStaleSocket(path, address: address)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
            | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .systemCall("socket", errno) }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let code = errno
            Glibc.close(fd)
            throw .systemCall("bind \(config.address)", code)
        }
        do {
            try applyPermissions(config.unixPermissions, path: path)
        } catch {
            Glibc.close(fd)
            unlink(path)
            throw error
        }
        guard listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw .systemCall("listen", code)
        }
        let info = ListenerInfo(name: config.name, services: config.services, isUnix: true, boundAddress: "unix:\(path)")
        return ListeningSocket(descriptor: fd, info: info, port: nil, security: security)
    }

    /// Removes a socket file left by a previous run, but never one that a
    /// running process still accepts on, and never a file that is not a socket.
    private static func removeStaleSocket(_ path: String, address: sockaddr_un) throws(ReactorError) {
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        guard status.st_mode & S_IFMT == S_IFSOCK else {
            throw .invalidAddress("unix:\(path) exists and is not a socket")
        }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { throw .systemCall("socket", errno) }
        defer { Glibc.close(probe) }
        var target = address
        let connected = withUnsafePointer(to: &target) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 { throw .addressInUse("unix:\(path)") }
        unlink(path)
    }

    private static func applyPermissions(_ permissions: UnixSocketPermissions, path: String) throws(ReactorError) {
        var uid = uid_t.max
        var gid = gid_t.max
        if let owner = permissions.owner {
            guard let entry = getpwnam(owner) else { throw .unknownUser(owner) }
            uid = entry.pointee.pw_uid
        }
        if let group = permissions.group {
            guard let entry = getgrnam(group) else { throw .unknownGroup(group) }
            gid = entry.pointee.gr_gid
        }
        if uid != uid_t.max || gid != gid_t.max {
            guard chown(path, uid, gid) == 0 else { throw .systemCall("chown \(path)", errno) }
        }
        guard chmod(path, mode_t(permissions.mode)) == 0 else { throw .systemCall("chmod \(path)", errno) }
    }

    private static func localPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return socketAddressPort(storage)
    }
}

/// Returns the port of an IPv4 or IPv6 socket address, in host order.
func socketAddressPort(_ storage: sockaddr_storage) -> UInt16 {
    var copy = storage
    return withUnsafePointer(to: &copy) { pointer in
        switch Int32(storage.ss_family) {
        case AF_INET:
            pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        case AF_INET6:
            pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
        default:
            0
        }
    }
}

/// Formats a peer address as `192.0.2.1:port` or `[2001:db8::1]:port`.
func describePeer(_ storage: sockaddr_storage) -> String {
    var copy = storage
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    let port = socketAddressPort(storage)
    return withUnsafePointer(to: &copy) { pointer -> String in
        switch Int32(storage.ss_family) {
        case AF_INET:
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                var raw = address.pointee.sin_addr
                inet_ntop(AF_INET, &raw, &text, socklen_t(text.count))
                return "\(text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }):\(port)"
            }
        case AF_INET6:
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                var raw = address.pointee.sin6_addr
                inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
                return "[\(text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })]:\(port)"
            }
        default:
            return "unknown"
        }
    }
}
