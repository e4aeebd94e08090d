// A TLS server connection over a non-blocking socket. The event loop drives
// the handshake by readiness; reads and writes map OpenSSL's WANT_READ and
// WANT_WRITE to `.wouldBlock`, so no call ever blocks a reactor thread.
import COpenSSL
import CShim
#if canImport(Glibc)
import Glibc
#endif

/// Outcome of one handshake step.
enum HandshakeStep: Equatable {
    case complete
    case wouldBlock(IOInterest)
    case failed(String)
}

/// A TLS connection; lives on the thread of its event loop.
public final class TLSTransport: Transport {
    public private(set) var fileDescriptor: Int32
    private var ssl: OpaquePointer?
    private var isHandshakeComplete = false

    /// Creates the server side of a TLS connection on `fileDescriptor`; nil when OpenSSL fails.
    init?(context: TLSContext, fileDescriptor: Int32) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.pointer) else { return nil }
        guard SSL_set_fd(ssl, fileDescriptor) == 1 else {
            SSL_free(ssl)
            return nil
        }
        SSL_set_accept_state(ssl)
        self.ssl = ssl
        self.fileDescriptor = fileDescriptor
    }

    deinit { close() }

    /// Advances the handshake as far as the socket allows.
    func handshake() -> HandshakeStep {
        guard let ssl else { return .failed("connection closed") }
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            isHandshakeComplete = true
            return .complete
        }
        let code = SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ: return .wouldBlock(.read)
        case SSL_ERROR_WANT_WRITE: return .wouldBlock(.write)
        default:
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK {
                return .failed("client certificate rejected: \(String(cString: X509_verify_cert_error_string(verify)))")
            }
            let detail = openSSLErrors()
            if code == SSL_ERROR_SYSCALL, detail == "no detail from OpenSSL" {
                return .failed(errno == 0 ? "peer closed the connection during the handshake"
                                          : "handshake I/O failed: \(String(cString: strerror(errno)))")
            }
            return .failed(detail)
        }
    }

    /// The verified client certificate's identity; nil before the handshake or without a certificate.
    func peerIdentity() -> PeerIdentity? {
        guard let ssl, let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        return PeerIdentity(certificate: certificate)
    }

    /// Whether the handshake reused a session (a ticket).
    var isResumed: Bool {
        guard let ssl else { return false }
        return SSL_session_reused(ssl) == 1
    }

    public var hasBufferedInput: Bool {
        guard let ssl else { return false }
        return SSL_pending(ssl) > 0 || SSL_has_pending(ssl) == 1
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> TransportResult {
        guard let ssl else { return .failed(EBADF) }
        ERR_clear_error()
        let count = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if count > 0 { return .bytes(Int(count)) }
        return failure(SSL_get_error(ssl, count), reading: true)
    }

    // NOTE: An SSL_write that returns WANT_READ makes the connection wait for
    // writability, which is ready at once, so the loop retries until the peer
    // sends. OpenSSL needs that only for renegotiation, which the context turns off.
    public func write(from buffer: UnsafeRawBufferPointer) -> TransportResult {
        guard let ssl else { return .failed(EBADF) }
        guard buffer.count > 0 else { return .bytes(0) }
        ERR_clear_error()
        let count = SSL_write(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if count > 0 { return .bytes(Int(count)) }
        return failure(SSL_get_error(ssl, count), reading: false)
    }

    private func failure(_ code: Int32, reading: Bool) -> TransportResult {
        switch code {
        case SSL_ERROR_WANT_READ: return .wouldBlock(.read)
        case SSL_ERROR_WANT_WRITE: return .wouldBlock(.write)
        case SSL_ERROR_ZERO_RETURN: return reading ? .endOfStream : .failed(EPIPE)
        case SSL_ERROR_SYSCALL:
            ERR_clear_error()
            return errno == 0 && reading ? .endOfStream : .failed(errno == 0 ? EPIPE : errno)
        default:
            ERR_clear_error()
            // OpenSSL 3 reports a peer that closed without close_notify as an SSL error.
            return reading ? .endOfStream : .failed(EPROTO)
        }
    }

    public func close() {
        if let ssl {
            if isHandshakeComplete {
                ERR_clear_error()
                _ = SSL_shutdown(ssl)
                ERR_clear_error()
            }
            SSL_free(ssl)
            self.ssl = nil
        }
        guard fileDescriptor >= 0 else { return }
        Glibc.close(fileDescriptor)
        fileDescriptor = -1
    }
}
