// Mutual TLS on the reactor: which clients the handshake admits, and that a
// rejected or stalled client never disturbs a good client on another
// connection.
import COpenSSL
import Config
import Foundation
import Reactor
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct HandshakeTests {
    @Test func goodClientGetsItsGrant() throws {
        let server = try TLSServer()
        defer { server.stop() }
        let client = TLSClient(port: server.port, certificate: "client-mx1.crt", key: "client-mx1.key")
        #expect(client.request("hello") == "hello policy=true maps=alias cn=mx1 host=127.0.0.1")
    }

    /// Connects a good client, runs `bad`, then checks the good client still gets answers.
    private func checkRejected(certificate: String?, key: String?, trust: String = "ca.crt") throws -> (String?, Int) {
        let server = try TLSServer()
        defer { server.stop() }
        let good = TLSClient(port: server.port, certificate: "client-mx1.crt", key: "client-mx1.key")
        #expect(good.request("before") == "before policy=true maps=alias cn=mx1 host=127.0.0.1")
        let bad = TLSClient(port: server.port, certificate: certificate, key: key, trust: trust)
        let reply = bad.request("hello")
        #expect(good.request("after") == "after policy=true maps=alias cn=mx1 host=127.0.0.1")
        return (reply, waitForCount(server.security.counters.handshakesFailed, 1))
    }

    @Test func clientWithoutCertificateIsRejected() throws {
        let (reply, failures) = try checkRejected(certificate: nil, key: nil)
        #expect(reply == nil)
        #expect(failures == 1)
    }

    @Test func clientFromOtherCAIsRejected() throws {
        let (reply, failures) = try checkRejected(certificate: "client-foreign.crt", key: "client-foreign.key")
        #expect(reply == nil)
        #expect(failures == 1)
    }

    @Test func expiredClientCertificateIsRejected() throws {
        let (reply, failures) = try checkRejected(certificate: "client-expired.crt", key: "client-expired.key")
        #expect(reply == nil)
        #expect(failures == 1)
    }

    @Test func revokedClientCertificateIsRejected() throws {
        let (reply, failures) = try checkRejected(certificate: "client-revoked.crt", key: "client-revoked.key")
        #expect(reply == nil)
        #expect(failures == 1)
    }

    @Test func otherIdentityGetsOnlyItsMaps() throws {
        let server = try TLSServer()
        defer { server.stop() }
        let client = TLSClient(port: server.port, certificate: "client-mx2.crt", key: "client-mx2.key")
        #expect(client.request("hi") == "hi policy=false maps=alias cn=mx2 host=127.0.0.1")
    }

    @Test func plainTextOnTLSPortIsDropped() throws {
        let server = try TLSServer()
        defer { server.stop() }
        let good = TLSClient(port: server.port, certificate: "client-mx1.crt", key: "client-mx1.key")
        let fd = connectLoopback(server.port)
        defer { close(fd) }
        let request = "request=smtpd_access_policy\nprotocol_state=RCPT\n\n"
        _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        let (_, closed) = readUntilClosed(fd)
        #expect(closed)
        #expect(good.request("still") == "still policy=true maps=alias cn=mx1 host=127.0.0.1")
        #expect(waitForCount(server.security.counters.handshakesFailed, 1) == 1)
    }

    @Test func stalledHandshakeIsClosed() throws {
        let server = try TLSServer()
        defer { server.stop() }
        let good = TLSClient(port: server.port, certificate: "client-mx1.crt", key: "client-mx1.key")
        let fd = connectLoopback(server.port)
        defer { close(fd) }
        // Half a ClientHello: a record header that promises more than arrives.
        let partial: [UInt8] = [0x16, 0x03, 0x01, 0x01, 0x00, 0x01]
        _ = partial.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        #expect(good.request("during") == "during policy=true maps=alias cn=mx1 host=127.0.0.1")
        let (bytes, closed) = readUntilClosed(fd)
        #expect(bytes == 0)
        #expect(closed)
        #expect(waitForCount(server.security.counters.handshakeTimeouts, 1) == 1)
        #expect(good.request("after") == "after policy=true maps=alias cn=mx1 host=127.0.0.1")
    }

    @Test func resumedSessionSkipsFullHandshake() throws {
        let server = try TLSServer()
        defer { server.stop() }
        let first = TLSClient(port: server.port, certificate: "client-mx1.crt", key: "client-mx1.key")
        #expect(first.request("one") != nil)
        let session = first.session()
        defer { if let session { SSL_SESSION_free(session) } }
        let second = TLSClient(port: server.port, certificate: "client-mx1.crt", key: "client-mx1.key", session: session)
        #expect(second.request("two") == "two policy=true maps=alias cn=mx1 host=127.0.0.1")
        #expect(second.isResumed)
    }

    @Test func rsaServerKeyServesClients() throws {
        let server = try TLSServer(Fixture.listenerConfig(tls: Fixture.tlsConfig(certificate: "server-rsa.crt", key: "server-rsa.key")))
        defer { server.stop() }
        let client = TLSClient(port: server.port, certificate: "client-mx1.crt", key: "client-mx1.key")
        #expect(client.request("rsa") == "rsa policy=true maps=alias cn=mx1 host=127.0.0.1")
        #expect(client.serverFingerprint == fileFingerprint("server-rsa.crt"))
    }

    @Test func proxyHeaderFromBalancerSetsPeer() throws {
        let server = try TLSServer(Fixture.listenerConfig(proxyFrom: ["127.0.0.1/32"]))
        defer { server.stop() }
        let header = ProxyHeader.signature + [0x21, 0x11, 0x00, 0x0C, 192, 0, 2, 7, 127, 0, 0, 1, 0x30, 0x39, 0x27, 0x10]
        let client = TLSClient(port: server.port, certificate: "client-foreign.crt", key: "client-foreign.key", prefix: header)
        #expect(client.request("x") == nil)
        let proxied = TLSClient(port: server.port, certificate: "client-mx2.crt", key: "client-mx2.key", prefix: header)
        #expect(proxied.request("via") == "via policy=false maps=alias,domain cn=mx2 host=192.0.2.7")
    }

    @Test func garbageProxyHeaderIsDropped() throws {
        let server = try TLSServer(Fixture.listenerConfig(proxyFrom: ["127.0.0.1/32"]))
        defer { server.stop() }
        let fd = connectLoopback(server.port)
        defer { close(fd) }
        let garbage = Array("PROXY TCP4 192.0.2.7 127.0.0.1 1 2\r\n".utf8)
        _ = garbage.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let (_, closed) = readUntilClosed(fd)
        #expect(closed)
        #expect(waitForCount(server.security.counters.proxyHeadersRejected, 1) == 1)
    }
}

/// Returns the counter once it reaches `value`, or its value after 5 seconds:
/// the server counts a failed handshake just after the client sees the alert.
private func waitForCount(_ counter: borrowing Atomic<Int>, _ value: Int) -> Int {
    for _ in 0..<500 where counter.load(ordering: .relaxed) < value { usleep(10_000) }
    return counter.load(ordering: .relaxed)
}
