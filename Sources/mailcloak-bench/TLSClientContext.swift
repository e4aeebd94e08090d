// The client side of mutual TLS for mailcloak-bench: one OpenSSL context per
// run holding the client certificate and key and the CAs that verify the
// server. Connections get their SSL objects from it on their own thread.

import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// An `SSL_CTX` configured for the client side of mutual TLS.
///
/// `@unchecked Sendable`: the context is not changed after `load`, and
/// OpenSSL allows `SSL_new` on one context from many threads at once.
final class TLSClientContext: @unchecked Sendable {
    let pointer: OpaquePointer
    let serverName: String?

    private init(pointer: OpaquePointer, serverName: String?) {
        self.pointer = pointer
        self.serverName = serverName
    }

    deinit { SSL_CTX_free(pointer) }

    /// Loads the files; returns an error naming the file that did not load.
    static func load(_ files: BenchOptions.TLSFiles) -> Result<TLSClientContext, BenchUsageError> {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            return .failure(BenchUsageError(message: "SSL_CTX_new failed: \(openSSLErrors())"))
        }
        // SSL_CTX_set_mode and SSL_CTX_set_min_proto_version are macros over SSL_CTX_ctrl.
        // A retried SSL_write may come from a moved buffer, and partial writes keep the loop non-blocking.
        _ = SSL_CTX_ctrl(context, SSL_CTRL_MODE, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), nil)
        _ = SSL_CTX_ctrl(context, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        SSL_CTX_set_default_passwd_cb(context) { _, _, _, _ in 0 }

        let failure: String?
        if SSL_CTX_use_certificate_chain_file(context, files.certificate) != 1 {
            failure = "cannot load client certificate \(files.certificate): \(openSSLErrors())"
        } else if SSL_CTX_use_PrivateKey_file(context, files.key, SSL_FILETYPE_PEM) != 1 {
            failure = "cannot load client key \(files.key) (it must not be encrypted): \(openSSLErrors())"
        } else if SSL_CTX_check_private_key(context) != 1 {
            failure = "client key \(files.key) does not match certificate \(files.certificate)"
        } else if SSL_CTX_load_verify_locations(context, files.ca, nil) != 1 {
            failure = "cannot load CA bundle \(files.ca): \(openSSLErrors())"
        } else {
            failure = nil
        }
        if let failure {
            SSL_CTX_free(context)
            return .failure(BenchUsageError(message: failure))
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        return .success(TLSClientContext(pointer: context, serverName: files.serverName))
    }

    /// Creates the client side of a connection on `fd`, offering `session` when given.
    func makeConnection(fd: Int32, session: OpaquePointer?) -> Result<OpaquePointer, TLSFailure> {
        ERR_clear_error()
        guard let ssl = SSL_new(pointer) else { return .failure(TLSFailure("SSL_new failed: \(openSSLErrors())")) }
        guard SSL_set_fd(ssl, fd) == 1 else {
            SSL_free(ssl)
            return .failure(TLSFailure("SSL_set_fd failed: \(openSSLErrors())"))
        }
        SSL_set_connect_state(ssl)
        if let serverName {
            // SSL_set_tlsext_host_name is a macro over SSL_ctrl.
            _ = serverName.withCString {
                SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0))
            }
            guard SSL_set1_host(ssl, serverName) == 1 else {
                SSL_free(ssl)
                return .failure(TLSFailure("cannot check the server name \(serverName): \(openSSLErrors())"))
            }
        }
        if let session, SSL_set_session(ssl, session) != 1 {
            ERR_clear_error()
        }
        return .success(ssl)
    }
}

/// Why a TLS call failed, as a line for the report's error counts.
struct TLSFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// Describes the failure of an `SSL_connect`, `SSL_read` or `SSL_write` that returned `result`.
/// Call it before any other OpenSSL call on this thread, so the error queue is still the call's.
func describeTLSFailure(_ ssl: OpaquePointer, result: Int32, during step: String) -> String {
    let code = SSL_get_error(ssl, result)
    let verify = SSL_get_verify_result(ssl)
    if verify != Int(X509_V_OK) {
        ERR_clear_error()
        return "TLS \(step): server certificate rejected: \(String(cString: X509_verify_cert_error_string(verify)))"
    }
    switch code {
    case SSL_ERROR_ZERO_RETURN:
        return "TLS \(step): the server closed the connection (close_notify)"
    case SSL_ERROR_SYSCALL where ERR_peek_error() == 0:
        let reason = errno == 0 ? "the server closed the connection" : String(cString: strerror(errno))
        return "TLS \(step): \(reason)"
    default:
        return "TLS \(step): \(openSSLErrors())"
    }
}

/// Takes every error from this thread's OpenSSL error queue and joins the first four.
func openSSLErrors() -> String {
    var messages: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        if messages.count < 4 { messages.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }) }
    }
    return messages.isEmpty ? "no detail from OpenSSL" : messages.joined(separator: "; ")
}
