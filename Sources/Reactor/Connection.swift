// One accepted connection: its transport, input and output buffers, and
// deadlines. A connection lives on the event loop that accepted it and is
// touched only by that loop's thread; other threads reach it through
// `EventLoop.deliver(_:to:)` with its id.
#if canImport(Glibc)
import Glibc
#endif

/// Identifies a connection within the process; never reused.
public typealias ConnectionID = UInt64

/// The protocol side of a connection, called on its event loop's thread.
public protocol ConnectionHandler: AnyObject {
    /// Called after new bytes were appended to the input. The handler reads
    /// `connection.withInput`, consumes what it decoded, and may send replies.
    func connectionReadable(_ connection: Connection)
    /// Called with a message that another thread delivered to this connection.
    func connectionReceived(_ message: any Sendable, on connection: Connection)
    /// Called once when the connection closes, for any reason.
    func connectionClosed(_ connection: Connection, reason: CloseReason)
}

/// Why a connection closed; logged and, later, counted.
public enum CloseReason: String, Sendable {
    case peerClosed = "peer_closed"
    case readFailed = "read_failed"
    case writeFailed = "write_failed"
    case protocolError = "protocol_error"
    case idleTimeout = "idle_timeout"
    case ioTimeout = "io_timeout"
    case inputLimit = "input_limit"
    case outputLimit = "output_limit"
    case handshakeFailed = "tls_handshake_failed"
    case handshakeTimeout = "tls_handshake_timeout"
    case proxyHeaderInvalid = "proxy_header_invalid"
    case shutdown
}

/// Where a connection stands before its protocol handler may see a byte.
enum ConnectionPhase: Equatable {
    /// Waiting for the PROXY protocol v2 header of a load balancer.
    case proxyHeader
    /// In the TLS handshake.
    case handshake
    /// Set up: the handler reads and writes.
    case ready
}

/// A connection as the protocol handlers see it.
public final class Connection {
    public let id: ConnectionID
    /// The peer as `ip:port` or `unix`; the client behind a load balancer when a PROXY header named it.
    public internal(set) var peer: String
    /// The peer's 4 or 16 address bytes, for network access rules; nil on a UNIX socket.
    public internal(set) var peerAddress: [UInt8]?
    public let listener: ListenerInfo
    /// The listener's TLS and access state; nil on a plain listener without rules.
    public let security: ListenerSecurity?
    /// The verified client certificate's identity, once the TLS handshake completed.
    public internal(set) var peerIdentity: PeerIdentity?
    /// The services this connection may use, decided once when it was set up.
    public internal(set) var grant: AccessGrant = .everything
    var phase: ConnectionPhase = .ready
    /// The TCP peer address counted by the connection limits; nil for a UNIX socket peer.
    var admissionSource: [UInt8]?
    /// Monotonic time by which the PROXY header and handshake must be done.
    var setupDeadline: Double?
    var proxyBuffer: [UInt8] = []
    public internal(set) var handler: (any ConnectionHandler)?
    unowned let loop: EventLoop
    let transport: any Transport

    var input: [UInt8] = []
    var inputStart = 0
    var output: [UInt8] = []
    var outputStart = 0
    var interest: IOInterest = .read
    public internal(set) var isClosed = false
    var closeAfterFlush = false
    /// The peer shut down its sending side; close once the last reply is out.
    var inputClosed = false
    private var isDrainingAfterEndOfInput = false
    /// Monotonic time of the last byte read or written.
    var lastActivity: Double
    /// Monotonic time when the current partial request began, or nil.
    var requestStarted: Double?
    /// Monotonic time since when output has been waiting, or nil.
    var outputPendingSince: Double?
    /// While true, bytes read are buffered but not handed to the handler.
    public var isReadingPaused = false {
        didSet { if !isReadingPaused && oldValue { loop.scheduleReadable(self) } }
    }

    init(id: ConnectionID, peer: String, listener: ListenerInfo, transport: any Transport, loop: EventLoop, now: Double,
         peerAddress: [UInt8]? = nil, security: ListenerSecurity? = nil) {
        self.id = id
        self.peer = peer
        self.peerAddress = peerAddress
        self.listener = listener
        self.security = security
        self.transport = transport
        self.loop = loop
        self.lastActivity = now
    }

    /// The event loop that owns this connection; `deliver(_:to:)` reaches it from other threads.
    public var eventLoop: EventLoop { loop }

    /// The number of bytes read and not yet consumed.
    public var bufferedInputCount: Int { input.count - inputStart }

    /// Whether the connection has no request in progress, no reply awaited from a worker,
    /// and no output queued.
    var hasNothingPending: Bool {
        !isReadingPaused && bufferedInputCount == 0 && output.count == outputStart
    }

    /// Calls `body` with the unconsumed input; `body` returns how many bytes it consumed.
    public func withInput(_ body: (UnsafeRawBufferPointer) -> Int) {
        let consumed = input.withUnsafeBytes { all in
            body(UnsafeRawBufferPointer(rebasing: all[inputStart...]))
        }
        precondition(consumed >= 0 && consumed <= input.count - inputStart, "handler consumed more than it was given")
        inputStart += consumed
        if inputStart == input.count {
            input.removeAll(keepingCapacity: true)
            inputStart = 0
        }
    }

    /// Marks the start of a request that must complete within the I/O timeout.
    public func markRequestStarted() {
        if requestStarted == nil { requestStarted = loop.now }
    }

    /// Clears the partial-request deadline after a whole request was decoded.
    public func markRequestComplete() {
        requestStarted = nil
    }

    /// Queues `bytes` for the peer and writes as much as the socket takes now.
    public func send(_ bytes: [UInt8]) {
        guard !isClosed else { return }
        if output.count == outputStart {
            output.removeAll(keepingCapacity: true)
            outputStart = 0
            let written = bytes.withUnsafeBytes { writeNow($0) }
            guard let written else { return }
            if written == bytes.count { return }
            output.append(contentsOf: bytes[written...])
        } else {
            output.append(contentsOf: bytes)
        }
        if outputPendingSince == nil { outputPendingSince = loop.now }
        // A peer that sends requests but never reads the replies ties up only this much memory.
        if output.count - outputStart > loop.limits.maxBufferedOutput {
            close(reason: .outputLimit)
            return
        }
        loop.updateInterest(self, adding: .write)
    }

    /// Closes the connection once queued output is written.
    public func closeAfterWriting() {
        if output.count == outputStart {
            close(reason: .protocolError)
        } else {
            closeAfterFlush = true
        }
    }

    /// Closes the connection now; queued output is dropped.
    public func close(reason: CloseReason) {
        loop.close(self, reason: reason)
    }

    /// Writes what it can without blocking; nil when the connection failed and closed.
    private func writeNow(_ buffer: UnsafeRawBufferPointer) -> Int? {
        var offset = 0
        while offset < buffer.count {
            switch transport.write(from: UnsafeRawBufferPointer(rebasing: buffer[offset...])) {
            case .bytes(let count):
                offset += count
                lastActivity = loop.now
            case .wouldBlock:
                return offset
            case .endOfStream, .failed:
                close(reason: .writeFailed)
                return nil
            }
        }
        return offset
    }

    /// Writes queued output after the socket became writable.
    func flush() {
        let written = output.withUnsafeBytes { writeNow(UnsafeRawBufferPointer(rebasing: $0[outputStart...])) }
        guard let written else { return }
        outputStart += written
        if outputStart == output.count {
            output.removeAll(keepingCapacity: true)
            outputStart = 0
            outputPendingSince = nil
            loop.updateInterest(self, removing: .write)
            if closeAfterFlush { close(reason: .protocolError) }
            closeIfFinished()
        }
    }

    /// Closes a connection whose peer stopped sending once nothing is left to do:
    /// complete requests still buffered are answered first, a partial one is dropped.
    func closeIfFinished() {
        guard inputClosed, !isClosed, !isReadingPaused else { return }
        if bufferedInputCount > 0, !isDrainingAfterEndOfInput {
            isDrainingAfterEndOfInput = true
            handler?.connectionReadable(self)
            isDrainingAfterEndOfInput = false
            guard !isClosed, !isReadingPaused else { return }
        }
        guard output.count == outputStart else { return }
        close(reason: .peerClosed)
    }
}
