// Shared setup of the TLS tests: demo certificates made by
// certs-example/make-certs.sh at test time (no key is kept in the
// repository), a reactor with a mutual-TLS listener, and a blocking OpenSSL
// client. The handler answers each line with what the connection was
// granted, so tests can see the access decision.
import COpenSSL
import Config
import Foundation
import Reactor
import Testing
#if canImport(Glibc)
import Glibc
#endif

enum Fixture {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// A folder of demo certificates, made once per test process.
    static let certificates: String = {
        signal(SIGPIPE, SIG_IGN)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)").path
        let status = runTool("/bin/sh", [repositoryRoot + "/certs-example/make-certs.sh", folder, "mailcloak.test", "mx1", "mx2"])
        precondition(status == 0, "make-certs.sh failed with status \(status)")
        return folder
    }()

    static func path(_ name: String) -> String { certificates + "/" + name }

    /// Runs a program to its end and returns its exit status.
    @discardableResult
    static func runTool(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    static func tlsConfig(certificate: String = "server.crt", key: String = "server.key", ca: String = "ca.crt",
                          crl: Bool = true) -> ListenerTLSConfig {
        var tls = ListenerTLSConfig(certificate: path(certificate), key: path(key), clientCA: path(ca))
        if crl { tls.crl = [path("ca.crl")] }
        tls.handshakeTimeout = 1
        tls.reloadInterval = 0
        return tls
    }

    /// mx1 may use policy and the alias map; mx2 only the alias map; 192.0.2.0/24 gets the domain map.
    static func rules() -> [ACLRule] {
        var mx1 = ACLRule(name: "mx1")
        mx1.identities = [.uri("spiffe://mail.example/node/mx1")]
        mx1.policy = true
        mx1.maps = ["alias"]
        var mx2 = ACLRule(name: "mx2")
        mx2.identities = [.commonName("mx2")]
        mx2.maps = ["alias"]
        var balancerClients = ACLRule(name: "proxied")
        balancerClients.networks = [IPNetwork("192.0.2.0/24")!]
        balancerClients.maps = ["domain"]
        return [mx1, mx2, balancerClients]
    }

    static func listenerConfig(tls: ListenerTLSConfig = tlsConfig(), proxyFrom: [String] = []) -> ListenerConfig {
        var config = ListenerConfig(name: "mtls", address: .tcp(host: "127.0.0.1", port: 0))
        config.tls = tls
        config.acl = rules()
        config.proxyProtocolFrom = proxyFrom.map { IPNetwork($0)! }
        return config
    }
}

/// Answers each line with the connection's grant, peer and client common name.
final class GrantHandler: ConnectionHandler {
    func connectionReadable(_ connection: Connection) {
        while !connection.isClosed {
            var line: String?
            connection.withInput { buffer in
                guard let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) else { return 0 }
                line = String(decoding: buffer[..<newline], as: UTF8.self)
                return newline + 1
            }
            guard let line else { return }
            let grant = connection.grant
            let maps = grant.maps.sorted().joined(separator: ",")
            let host = connection.peer.split(separator: ":").first.map(String.init) ?? ""
            connection.send(Array(
                "\(line) policy=\(grant.policy) maps=\(maps) cn=\(connection.peerIdentity?.commonName ?? "-") host=\(host)\n".utf8))
        }
    }

    func connectionReceived(_ message: any Sendable, on connection: Connection) {}
    func connectionClosed(_ connection: Connection, reason: CloseReason) {}
}

struct GrantFactory: ConnectionHandlerFactory {
    func makeHandler(for connection: Connection) -> any ConnectionHandler { GrantHandler() }
}

/// A running reactor with one mutual-TLS listener; stopped by `stop()`.
final class TLSServer {
    let group: ServerLoopGroup
    let listener: ListeningSocket
    var port: UInt16 { listener.port! }
    var security: ListenerSecurity { listener.security! }

    init(_ config: ListenerConfig = Fixture.listenerConfig()) throws {
        listener = try ListeningSocket.bind(config)
        group = try ServerLoopGroup(
            threadCount: 2, listeners: [listener], limits: ConnectionLimits(idleTimeout: 60, ioTimeout: 60),
            factory: GrantFactory())
        group.start()
    }

    func stop() { group.stop() }
}

/// Opens a blocking TCP connection to 127.0.0.1 with 5-second send and receive timeouts.
func connectLoopback(_ port: UInt16) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if result != 0 {
        close(fd)
        return -1
    }
    return fd
}

/// Reads from a plain socket until the peer closes or 5 seconds pass; returns what arrived and whether it closed.
func readUntilClosed(_ fd: Int32) -> (bytes: Int, closed: Bool) {
    var total = 0
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = recv(fd, &chunk, chunk.count, 0)
        if count == 0 { return (total, true) }
        if count < 0 { return (total, errno == ECONNRESET) }
        total += count
    }
}

/// A blocking mutual-TLS client built on OpenSSL.
final class TLSClient {
    let fd: Int32
    private let context: OpaquePointer
    private let ssl: OpaquePointer
    /// Whether SSL_connect succeeded (in TLS 1.3 a rejected client certificate shows only on the first read).
    private(set) var connected = false

    /// Connects; `prefix` bytes (a PROXY header) are sent in the clear first.
    init(port: UInt16, certificate: String?, key: String?, trust: String = "ca.crt", session: OpaquePointer? = nil,
         prefix: [UInt8] = []) {
        _ = Fixture.certificates
        fd = connectLoopback(port)
        context = SSL_CTX_new(TLS_client_method())!
        SSL_CTX_load_verify_locations(context, Fixture.path(trust), nil)
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        if let certificate, let key {
            SSL_CTX_use_certificate_file(context, Fixture.path(certificate), SSL_FILETYPE_PEM)
            SSL_CTX_use_PrivateKey_file(context, Fixture.path(key), SSL_FILETYPE_PEM)
        }
        ssl = SSL_new(context)!
        if let session { SSL_set_session(ssl, session) }
        SSL_set_fd(ssl, fd)
        if !prefix.isEmpty {
            _ = prefix.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        connected = fd >= 0 && SSL_connect(ssl) == 1
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(context)
        if fd >= 0 { close(fd) }
    }

    /// Sends one line and returns the reply line, or nil when the connection failed or closed.
    func request(_ line: String) -> String? {
        guard connected else { return nil }
        let bytes = Array((line + "\n").utf8)
        let written = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
        guard written == Int32(bytes.count) else { return nil }
        var reply: [UInt8] = []
        var byte: UInt8 = 0
        while reply.count < 4096 {
            guard SSL_read(ssl, &byte, 1) == 1 else { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: reply, as: UTF8.self) }
            reply.append(byte)
        }
        return nil
    }

    /// SHA-256 fingerprint of the certificate the server presented.
    var serverFingerprint: [UInt8] {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return [] }
        defer { X509_free(certificate) }
        var digest = [UInt8](repeating: 0, count: 64)
        var length: UInt32 = 0
        X509_digest(certificate, EVP_sha256(), &digest, &length)
        return Array(digest[0..<Int(length)])
    }

    var isResumed: Bool { SSL_session_reused(ssl) == 1 }

    /// The session to resume later; the caller frees it with SSL_SESSION_free.
    func session() -> OpaquePointer? { SSL_get1_session(ssl) }
}

/// SHA-256 fingerprint of a PEM certificate file.
func fileFingerprint(_ name: String) -> [UInt8] {
    guard let file = fopen(Fixture.path(name), "r") else { return [] }
    defer { fclose(file) }
    guard let certificate = PEM_read_X509(file, nil, nil, nil) else { return [] }
    defer { X509_free(certificate) }
    var digest = [UInt8](repeating: 0, count: 64)
    var length: UInt32 = 0
    X509_digest(certificate, EVP_sha256(), &digest, &length)
    return Array(digest[0..<Int(length)])
}
