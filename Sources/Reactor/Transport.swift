// The byte stream under a connection. Plain sockets implement it here. A TLS
// transport wraps a socket the same way, so connections and protocol handlers
// never know which one they run on.
#if canImport(Glibc)
import Glibc
#endif

/// Outcome of one non-blocking read or write.
public enum TransportResult: Equatable {
    /// This many bytes moved (always > 0).
    case bytes(Int)
    /// Nothing moved now; wait for the readiness the transport names.
    case wouldBlock(IOInterest)
    /// The peer closed its side (reads only).
    case endOfStream
    /// The connection failed with this errno or library error code.
    case failed(Int32)
}

/// A non-blocking byte stream owned by one event loop thread.
public protocol Transport: AnyObject {
    var fileDescriptor: Int32 { get }
    func read(into buffer: UnsafeMutableRawBufferPointer) -> TransportResult
    func write(from buffer: UnsafeRawBufferPointer) -> TransportResult
    func close()
    /// Whether the transport holds input that the socket's readiness will not
    /// report again (TLS records OpenSSL has already read); the loop reads on.
    var hasBufferedInput: Bool { get }
}

extension Transport {
    public var hasBufferedInput: Bool { false }
}

/// A plain TCP or UNIX stream socket.
public final class SocketTransport: Transport {
    public private(set) var fileDescriptor: Int32

    public init(fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    deinit { close() }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> TransportResult {
        while true {
            let count = Glibc.read(fileDescriptor, buffer.baseAddress, buffer.count)
            if count > 0 { return .bytes(count) }
            if count == 0 { return .endOfStream }
            switch errno {
            case EINTR: continue
            case EAGAIN: return .wouldBlock(.read)
            default: return .failed(errno)
            }
        }
    }

    public func write(from buffer: UnsafeRawBufferPointer) -> TransportResult {
        while true {
            let count = Glibc.send(fileDescriptor, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL))
            if count >= 0 { return count == 0 ? .wouldBlock(.write) : .bytes(count) }
            switch errno {
            case EINTR: continue
            case EAGAIN: return .wouldBlock(.write)
            default: return .failed(errno)
            }
        }
    }

    public func close() {
        guard fileDescriptor >= 0 else { return }
        Glibc.close(fileDescriptor)
        fileDescriptor = -1
    }
}
