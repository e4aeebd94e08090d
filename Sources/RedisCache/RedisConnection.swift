// One blocking connection to Redis through hiredis 0.14 (no TLS, no RESP3).
// Every connect, read and write has a deadline. After any I/O or protocol
// error hiredis leaves the context unusable, so the connection marks itself
// broken and the pool discards it.
import CHiredis

#if canImport(Glibc)
    import Glibc
#endif

/// A reply of the Redis server, copied out of hiredis's reply object.
package enum RedisReply: Equatable, Sendable {
    case string([UInt8])
    case status(String)
    case integer(Int64)
    case array([RedisReply])
    case null
    /// An error reply such as `WRONGTYPE ...`; the connection stays usable.
    case error(String)

    /// The text of a bulk string or status reply, or nil.
    package var text: String? {
        switch self {
        case .string(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }
}

/// A host and TCP port.
package struct RedisAddress: Sendable, Equatable {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, where host may be a bracketed IPv6 address.
    package init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            return nil
        }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty else { return nil }
        self.init(host: String(host), port: port)
    }
}

/// Connection settings of one Redis server, or of the primary that Redis
/// Sentinel names.
package struct RedisEndpoint: Sendable, Equatable {
    package var host: String
    package var port: Int
    /// Sentinels to ask for the primary; empty to use `host` and `port`.
    package var sentinels: [RedisAddress] = []
    package var sentinelMaster = "mymaster"
    package var password: String?
    package var database: Int
    package var connectTimeout: Double
    package var commandTimeout: Double

    package init(
        host: String, port: Int, password: String? = nil, database: Int = 0, connectTimeout: Double = 0.5,
        commandTimeout: Double = 0.25
    ) {
        self.host = host
        self.port = port
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
    }
}

/// A connected hiredis context. Not thread-safe: one thread uses it at a
/// time, which `RedisPool` ensures by handing it out exclusively.
package final class RedisConnection: @unchecked Sendable {
    // @unchecked: the pool hands each connection to one thread at a time, and
    // only that thread touches the context.
    private let context: UnsafeMutablePointer<redisContext>
    /// Set after an I/O or protocol error; the connection must be closed.
    package private(set) var isBroken = false

    /// Connects to the endpoint's server (with sentinels, to the primary
    /// they name), sets the command timeout, and sends AUTH and SELECT
    /// when configured.
    /// - Throws: `RedisError.connectFailed` or the error of AUTH or SELECT.
    package convenience init(_ endpoint: RedisEndpoint) throws(RedisError) {
        guard !endpoint.sentinels.isEmpty else {
            try self.init(address: RedisAddress(host: endpoint.host, port: endpoint.port), endpoint: endpoint)
            return
        }
        let primary = try RedisSentinel.primary(of: endpoint)
        try self.init(address: primary, endpoint: endpoint)
        try RedisSentinel.requirePrimaryRole(self, address: primary)
    }

    /// Connects to `address` with the timeouts and credentials of `endpoint`.
    package init(address: RedisAddress, endpoint: RedisEndpoint) throws(RedisError) {
        guard let context = redisConnectWithTimeout(address.host, Int32(address.port), timeval(endpoint.connectTimeout))
        else {
            throw .connectFailed(reason: "out of memory")
        }
        // From here on deinit frees the context, also when init throws.
        self.context = context
        if context.pointee.err != 0 {
            throw .connectFailed(reason: Self.errorText(context))
        }
        redisSetTimeout(context, timeval(endpoint.commandTimeout))
        if let password = endpoint.password {
            try expectOK(command(["AUTH", password]), what: "AUTH")
        }
        if endpoint.database != 0 {
            try expectOK(command(["SELECT", String(endpoint.database)]), what: "SELECT \(endpoint.database)")
        }
    }

    deinit {
        redisFree(context)
    }

    /// The socket descriptor, for callers that poll before reading.
    package var fileDescriptor: Int32 { context.pointee.fd }

    /// Sends one command and reads its reply. Arguments are binary safe.
    /// - Throws: `RedisError.io` when the connection failed; an error reply
    ///   is returned as `.error`, not thrown.
    package func command(_ arguments: [String]) throws(RedisError) -> RedisReply {
        guard !isBroken else { throw .io(reason: "connection already failed") }
        let raw = withArgv(arguments) { argv, lengths in
            redisCommandArgv(context, Int32(arguments.count), argv, lengths)
        }
        return try takeReply(raw)
    }

    /// Sends several commands in one write and reads their replies in order,
    /// so they cost one round trip. The commands do not run atomically.
    package func pipeline(_ commands: [[String]]) throws(RedisError) -> [RedisReply] {
        guard !isBroken else { throw .io(reason: "connection already failed") }
        for arguments in commands {
            let status = withArgv(arguments) { argv, lengths in
                redisAppendCommandArgv(context, Int32(arguments.count), argv, lengths)
            }
            guard status == REDIS_OK else { throw fail() }
        }
        var replies: [RedisReply] = []
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(context, &raw) == REDIS_OK else { throw fail() }
            replies.append(try takeReply(raw))
        }
        return replies
    }

    /// Sends one command without reading its reply (for SUBSCRIBE).
    package func send(_ arguments: [String]) throws(RedisError) {
        let status = withArgv(arguments) { argv, lengths in
            redisAppendCommandArgv(context, Int32(arguments.count), argv, lengths)
        }
        guard status == REDIS_OK else { throw fail() }
        var done: Int32 = 0
        while done == 0 {
            guard redisBufferWrite(context, &done) == REDIS_OK else { throw fail() }
        }
    }

    /// Returns a reply already read into the buffer, reading from the
    /// socket only when `readSocket` is set. Nil when no whole reply is there.
    package func bufferedReply(readSocket: Bool) throws(RedisError) -> RedisReply? {
        if readSocket {
            guard redisBufferRead(context) == REDIS_OK else { throw fail() }
        }
        var raw: UnsafeMutableRawPointer?
        guard redisGetReplyFromReader(context, &raw) == REDIS_OK else { throw fail() }
        guard raw != nil else { return nil }
        return try takeReply(raw)
    }

    private func takeReply(_ raw: UnsafeMutableRawPointer?) throws(RedisError) -> RedisReply {
        guard let raw else { throw fail() }
        defer { freeReplyObject(raw) }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self))
    }

    private func expectOK(_ reply: RedisReply, what: String) throws(RedisError) {
        if case .error(let message) = reply { throw .rejected(command: what, message: message) }
    }

    private func fail() -> RedisError {
        isBroken = true
        let reason = context.pointee.err != 0 ? Self.errorText(context) : "no reply"
        return .io(reason: reason)
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return .string(bytes(value.str, value.len))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: bytes(value.str, value.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(value.str, value.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(value.integer)
        case REDIS_REPLY_ARRAY:
            return .array((0..<value.elements).map { convert(value.element[$0]!) })
        default:
            return .null
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ length: Int) -> [UInt8] {
        guard let pointer, length > 0 else { return [] }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            let end = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes[..<end], as: UTF8.self)
        }
    }
}

/// Calls `body` with C copies of `arguments` and their lengths.
private func withArgv<T>(
    _ arguments: [String],
    _ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> T
) -> T {
    let copies = arguments.map { argument -> (UnsafeMutablePointer<CChar>, Int) in
        let utf8 = Array(argument.utf8)
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, utf8.count))
        utf8.withUnsafeBufferPointer { source in
            source.withMemoryRebound(to: CChar.self) { buffer.update(from: $0.baseAddress!, count: utf8.count) }
        }
        return (buffer, utf8.count)
    }
    defer { copies.forEach { $0.0.deallocate() } }
    var pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0.0) }
    let lengths = copies.map(\.1)
    return pointers.withUnsafeMutableBufferPointer { argv in
        lengths.withUnsafeBufferPointer { body(argv.baseAddress!, $0.baseAddress!) }
    }
}

private func timeval(_ seconds: Double) -> timeval {
    let micros = Int(max(0.001, seconds) * 1_000_000)
    return Glibc.timeval(tv_sec: micros / 1_000_000, tv_usec: micros % 1_000_000)
}
