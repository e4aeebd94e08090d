// A blocking TCP client for the daemon tests that open many plain
// connections at once and send policy requests over them.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking loopback TCP client with 5 s send and receive timeouts.
final class LoopbackClient: @unchecked Sendable {
    // Unchecked: each instance is used by one thread at a time.
    let fd: Int32

    /// Connects to 127.0.0.1:`port`, with SO_RCVBUF set to `receiveBufferBytes` before the connect
    /// when given. Returns nil when the socket or the connect fails.
    init?(port: UInt16, receiveBufferBytes: Int32? = nil) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBufferBytes {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = TestEnvironment.loopbackAddress(port: port)
        let status = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            close(fd)
            return nil
        }
    }

    deinit { close(fd) }

    /// Writes all of `text`. Returns false when the connection failed or a write timed out.
    func write(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    /// Reads until the text ends with `terminator`, the peer closes, or 5 s pass without data.
    func read(until terminator: String) -> String {
        let ending = Array(terminator.utf8)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        while !(bytes.count >= ending.count && bytes.suffix(ending.count).elementsEqual(ending)) {
            let received = recv(fd, &chunk, chunk.count, 0)
            if received <= 0 { break }
            bytes.append(contentsOf: chunk[0..<received])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Sends `request` and reads until a blank line ends the reply, the peer closes, or 5 s pass.
    func exchange(_ request: String) -> String {
        guard write(request) else { return "" }
        return read(until: "\n\n")
    }

    /// Reads until the peer closes. Returns true on an end of stream or a reset with no data before it.
    /// Returns false on data or when 5 s pass.
    func readUntilClose() -> Bool {
        var byte: UInt8 = 0
        let received = recv(fd, &byte, 1, 0)
        return received == 0 || (received < 0 && errno == ECONNRESET)
    }

    /// Reports, without waiting, whether the peer has closed the connection.
    func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        let received = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
        return received == 0 || (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }
}
