// A server TLS context built from one listener's certificate, key, client CA
// bundle and CRLs. Built whole or not at all: every check (readable files, an
// unencrypted key that matches the certificate, a certificate valid now)
// runs before the context is used, so a bad new file never replaces a good
// context.
import COpenSSL
import CShim
import Config
#if canImport(Glibc)
import Glibc
#endif

/// Why TLS material could not be loaded.
public struct TLSError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The validity end of one loaded certificate.
public struct CertificateExpiry: Sendable, Equatable {
    /// The file the certificate came from.
    public let path: String
    public let subject: String
    /// Seconds since 1970 (UTC).
    public let notAfter: Double
}

/// An `SSL_CTX` after configuration.
///
/// `@unchecked Sendable`: the context is never changed after `load`, and
/// OpenSSL allows `SSL_new` on one context from many threads at once.
public final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer
    /// Every certificate loaded: the server chain and the client CAs.
    public let expiries: [CertificateExpiry]
    /// SHA-256 fingerprint of the server certificate.
    public let serverFingerprint: [UInt8]

    private init(pointer: OpaquePointer, expiries: [CertificateExpiry], serverFingerprint: [UInt8]) {
        self.pointer = pointer
        self.expiries = expiries
        self.serverFingerprint = serverFingerprint
    }

    deinit { SSL_CTX_free(pointer) }

    /// Builds a context from `config`; `now` (seconds since 1970) decides expiry.
    public static func load(_ config: ListenerTLSConfig, now: Double = wallClockSeconds()) throws(TLSError) -> TLSContext {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw TLSError("SSL_CTX_new failed: \(openSSLErrors())") }
        var owned: OpaquePointer? = context
        defer { if let owned { SSL_CTX_free(owned) } }

        _ = mc_ssl_ctx_set_server_modes(context)
        _ = mc_ssl_ctx_set_server_options(context)
        let version = config.minVersion == .tls13 ? mc_tls1_3_version() : mc_tls1_2_version()
        guard mc_ssl_ctx_set_min_proto_version(context, version) == 1 else {
            throw TLSError("cannot set the minimum TLS version: \(openSSLErrors())")
        }
        if let ciphers = config.ciphers, SSL_CTX_set_cipher_list(context, ciphers) != 1 {
            throw TLSError("invalid cipher list \"\(ciphers)\": \(openSSLErrors())")
        }
        if let suites = config.cipherSuites, SSL_CTX_set_ciphersuites(context, suites) != 1 {
            throw TLSError("invalid TLS 1.3 cipher suites \"\(suites)\": \(openSSLErrors())")
        }
        SSL_CTX_set_default_passwd_cb(context, mc_no_password)

        for path in config.files { try checkReadable(path) }
        if try isEncryptedKey(config.key) {
            throw TLSError("private key \(config.key) is encrypted; mailcloak needs an unencrypted key file (protect it with file permissions)")
        }
        guard SSL_CTX_use_certificate_chain_file(context, config.certificate) == 1 else {
            throw TLSError("cannot load certificate chain \(config.certificate): \(openSSLErrors())")
        }
        guard SSL_CTX_use_PrivateKey_file(context, config.key, SSL_FILETYPE_PEM) == 1 else {
            let detail = openSSLErrors()
            if detail.contains("key values mismatch") {
                throw TLSError("private key \(config.key) does not match certificate \(config.certificate)")
            }
            throw TLSError("cannot load private key \(config.key): \(detail)")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw TLSError("private key \(config.key) does not match certificate \(config.certificate)")
        }
        guard let leaf = SSL_CTX_get0_certificate(context) else {
            throw TLSError("no certificate in \(config.certificate)")
        }
        let notAfter = Double(mc_x509_time(leaf, 0))
        let notBefore = Double(mc_x509_time(leaf, 1))
        if notAfter < now {
            throw TLSError("server certificate \(config.certificate) expired at \(formatUTC(notAfter))")
        }
        if notBefore > now {
            throw TLSError("server certificate \(config.certificate) is not valid before \(formatUTC(notBefore))")
        }
        var expiries = [CertificateExpiry(path: config.certificate, subject: subjectLine(leaf), notAfter: notAfter)]

        guard SSL_CTX_load_verify_locations(context, config.clientCA, nil) == 1 else {
            throw TLSError("cannot load client CA bundle \(config.clientCA): \(openSSLErrors())")
        }
        let caCertificates = try readCertificates(config.clientCA)
        guard !caCertificates.isEmpty else { throw TLSError("no certificate in client CA bundle \(config.clientCA)") }
        for certificate in caCertificates {
            expiries.append(CertificateExpiry(
                path: config.clientCA, subject: subjectLine(certificate), notAfter: Double(mc_x509_time(certificate, 0))))
            X509_free(certificate)
        }
        if let names = SSL_load_client_CA_file(config.clientCA) {
            SSL_CTX_set_client_CA_list(context, names)
        }
        if !config.crl.isEmpty {
            let store = SSL_CTX_get_cert_store(context)
            for path in config.crl {
                let count = try addCRLs(path, to: store)
                guard count > 0 else { throw TLSError("no CRL in \(path)") }
            }
            X509_STORE_set_flags(store, UInt(X509_V_FLAG_CRL_CHECK))
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        SSL_CTX_set_verify_depth(context, Int32(config.verifyDepth))
        let sessionContext = Array("mailcloak".utf8)
        _ = SSL_CTX_set_session_id_context(context, sessionContext, UInt32(sessionContext.count))
        _ = mc_ssl_ctx_set_server_session_cache(context)
        guard mc_ssl_ctx_bound_resumption(context, Int(config.resumptionMaxAge.rounded(.up))) == 1 else {
            throw TLSError("cannot bound session resumption: \(openSSLErrors())")
        }
        if let path = config.sessionTicketKeys {
            var keys = try readTicketKeys(path)
            defer { keys.withUnsafeMutableBytes { _ = memset($0.baseAddress!, 0, $0.count) } }
            let set = keys.withUnsafeBufferPointer {
                mc_ssl_ctx_set_ticket_keys(context, $0.baseAddress, $0.count / ticketKeyLength)
            }
            guard set == 1 else { throw TLSError("cannot use the session ticket keys of \(path): \(openSSLErrors())") }
        }

        owned = nil
        return TLSContext(pointer: context, expiries: expiries, serverFingerprint: fingerprint(leaf))
    }
}

/// Seconds since 1970 on the wall clock.
public func wallClockSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Formats seconds since 1970 as `2026-12-04T17:30:00Z`.
public func formatUTC(_ seconds: Double) -> String {
    var time = time_t(seconds)
    var parts = tm()
    gmtime_r(&time, &parts)
    var buffer = [CChar](repeating: 0, count: 32)
    strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// Takes and formats every error on OpenSSL's error queue of this thread.
func openSSLErrors() -> String {
    var messages: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        if messages.count < 4 { messages.append(text) }
    }
    return messages.isEmpty ? "no detail from OpenSSL" : messages.joined(separator: "; ")
}

/// Opens `path` for reading and returns the descriptor, which the caller closes. Opening does not
/// block, and anything but a regular file (a FIFO, a device) is an error, so that no read of the TLS
/// files can hang a reload.
private func openRegularFile(_ path: String) throws(TLSError) -> Int32 {
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { throw TLSError("cannot read \(path): \(String(cString: strerror(errno)))") }
    var status = stat()
    guard fstat(fd, &status) == 0 else {
        let reason = String(cString: strerror(errno))
        Glibc.close(fd)
        throw TLSError("cannot read \(path): \(reason)")
    }
    guard status.st_mode & S_IFMT == S_IFREG else {
        Glibc.close(fd)
        throw TLSError("\(path) is not a regular file")
    }
    return fd
}

/// Checks that `path` is a regular file this process can open.
private func checkReadable(_ path: String) throws(TLSError) {
    Glibc.close(try openRegularFile(path))
}

/// Whether the PEM key file holds an encrypted key (PKCS#8 or the legacy Proc-Type header).
private func isEncryptedKey(_ path: String) throws(TLSError) -> Bool {
    guard let file = fopen(path, "r") else { throw TLSError("cannot read \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(file) }
    var buffer = [CChar](repeating: 0, count: 1024)
    var lines = 0
    while lines < 10_000, fgets(&buffer, Int32(buffer.count), file) != nil {
        lines += 1
        let line = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        if line.hasPrefix("-----BEGIN ENCRYPTED PRIVATE KEY-----") || line.hasPrefix("Proc-Type: 4,ENCRYPTED") {
            return true
        }
    }
    return false
}

/// Bytes of one session ticket key (MC_TICKET_KEY_LENGTH in CShim).
private let ticketKeyLength = 80
/// Maximum number of keys in a ticket key file: the current one and those of past rotations.
private let maxTicketKeys = 16

/// Reads a session ticket key file and returns its keys one after the other. The file has one key a
/// line, the newest first, as 160 hexadecimal digits (`openssl rand -hex 80`). Blank lines and lines
/// starting with `#` are skipped.
private func readTicketKeys(_ path: String) throws(TLSError) -> [UInt8] {
    let limit = 64 * 1024
    let fd = try openRegularFile(path)
    defer { Glibc.close(fd) }
    var text = [UInt8](repeating: 0, count: limit + 1)
    defer { text.withUnsafeMutableBytes { _ = memset($0.baseAddress!, 0, $0.count) } }
    var length = 0
    while length <= limit {
        let count = text.withUnsafeMutableBytes { read(fd, $0.baseAddress! + length, limit + 1 - length) }
        if count < 0 && errno == EINTR { continue }
        guard count >= 0 else { throw TLSError("cannot read \(path): \(String(cString: strerror(errno)))") }
        if count == 0 { break }
        length += count
    }
    guard length <= limit else { throw TLSError("session ticket key file \(path) is larger than 64 KiB") }

    var keys: [UInt8] = []
    var firstLineOfName: [[UInt8]: Int] = [:]
    var lineNumber = 0
    for line in text[..<length].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
        lineNumber += 1
        let blank: Set<UInt8> = [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r")]
        let trimmed = line.drop { blank.contains($0) }.reversed().drop { blank.contains($0) }.reversed()
        if trimmed.isEmpty || trimmed.first == UInt8(ascii: "#") { continue }
        if lineNumber == 1 && trimmed.starts(with: [0xEF, 0xBB, 0xBF]) {
            throw TLSError("session ticket key file \(path) line 1: starts with a byte order mark; save the file without one")
        }
        guard trimmed.count == 2 * ticketKeyLength, let key = decodeHex(Array(trimmed)) else {
            throw TLSError("session ticket key file \(path) line \(lineNumber): invalid key, expected \(2 * ticketKeyLength) hexadecimal digits (openssl rand -hex \(ticketKeyLength))")
        }
        let name = Array(key.prefix(16))
        if let earlier = firstLineOfName[name] {
            throw TLSError("session ticket key file \(path) line \(lineNumber): duplicate key name (the first 16 bytes) of line \(earlier)")
        }
        firstLineOfName[name] = lineNumber
        guard firstLineOfName.count <= maxTicketKeys else {
            throw TLSError("session ticket key file \(path) contains more than \(maxTicketKeys) keys; remove the oldest")
        }
        keys += key
    }
    guard !keys.isEmpty else { throw TLSError("no key in session ticket key file \(path); add one made by openssl rand -hex \(ticketKeyLength)") }
    return keys
}

/// Decodes hexadecimal digits (either case); nil for any other character.
private func decodeHex(_ digits: [UInt8]) -> [UInt8]? {
    func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(digits.count / 2)
    var index = 0
    while index + 1 < digits.count {
        guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
        bytes.append(high << 4 | low)
        index += 2
    }
    return bytes
}

/// Reads every certificate of a PEM file; the caller frees them.
private func readCertificates(_ path: String) throws(TLSError) -> [OpaquePointer] {
    guard let file = fopen(path, "r") else { throw TLSError("cannot read \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(file) }
    var certificates: [OpaquePointer] = []
    while certificates.count < 1000, let certificate = PEM_read_X509(file, nil, nil, nil) {
        certificates.append(certificate)
    }
    ERR_clear_error()
    return certificates
}

/// Adds every CRL of a PEM file to `store`; returns how many.
private func addCRLs(_ path: String, to store: OpaquePointer?) throws(TLSError) -> Int {
    guard let file = fopen(path, "r") else { throw TLSError("cannot read \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(file) }
    var count = 0
    while count < 1000, let crl = PEM_read_X509_CRL(file, nil, nil, nil) {
        defer { X509_CRL_free(crl) }
        guard X509_STORE_add_crl(store, crl) == 1 else {
            throw TLSError("cannot add CRL from \(path): \(openSSLErrors())")
        }
        count += 1
    }
    ERR_clear_error()
    return count
}

/// The certificate's subject in OpenSSL's one-line form.
func subjectLine(_ certificate: OpaquePointer) -> String {
    guard let name = X509_get_subject_name(certificate) else { return "" }
    var buffer = [CChar](repeating: 0, count: 512)
    X509_NAME_oneline(name, &buffer, Int32(buffer.count))
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// SHA-256 over the certificate's DER form.
func fingerprint(_ certificate: OpaquePointer) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
    var length: UInt32 = 0
    guard X509_digest(certificate, EVP_sha256(), &digest, &length) == 1 else { return [] }
    return Array(digest[0..<Int(length)])
}
