// Postfix nodes reaching mailcloak over mutual TLS through stunnel: postmap
// and smtpd through the stunnel client, access rules per node identity,
// clients that the handshake refuses, and certificate rotation with SIGHUP
// while requests keep flowing.

import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.serialized, .tlsStack)
struct TLSEndToEnd {
    @Test func postmapThroughStunnelFindsAlias() throws {
        let stack = try TLSStack.require()
        let table = "socketmap:inet:127.0.0.1:\(stack.mx1Port):alias"
        let configDirectory = stack.postfix.directory.appendingPathComponent("etc").path

        let result = try TestEnvironment.run("/usr/sbin/postmap", ["-c", configDirectory, "-q", "sales@example.com", table])

        #expect(result.status == 0)
        #expect(result.standardOutput == "alice@example.com\n")
    }

    @Test func smtpdThroughStunnelAsksPolicy() throws {
        let stack = try TLSStack.require()
        let arguments = ["--server", "127.0.0.1:\(stack.postfix.smtpPort)", "--ehlo", "client.test", "--timeout", "30",
                         "--from", "sender@remote.test", "--quit-after", "RCPT"]

        let known = try Swaks.run(arguments + ["--to", "sales@example.com"])
        let unknown = try Swaks.run(arguments + ["--to", "nobody@example.com"])

        #expect(known.replies(to: "RCPT TO") == [["250 2.1.5 Ok"]])
        #expect(unknown.replies(to: "RCPT TO") == [
            ["550 5.1.1 <nobody@example.com>: Recipient address rejected: No such user"],
        ])
    }

    @Test func nodeWithoutPolicyGrantGetsTempfail() throws {
        let stack = try TLSStack.require()
        // A connection speaks one protocol, picked by its first byte.
        let policySocket = try #require(PlainSocket(port: stack.mx2Port))
        let mapSocket = try #require(PlainSocket(port: stack.mx2Port))

        let policy = policySocket.exchange(
            "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=alice@example.com\n\n", until: "\n\n")
        let alias = mapSocket.exchange(netstring("alias sales@example.com"), until: ",")
        let domain = mapSocket.exchange(netstring("domain example.com"), until: ",")

        #expect(policy == "action=451 4.7.0 Policy service access denied for this client\n\n")
        #expect(alias == netstring("OK alice@example.com"))
        #expect(domain == netstring("PERM client not authorized for map domain"))
        #expect(stack.waitForLog(["event=\"access denied\"", "service=policy", "cn:mx2"]))
    }

    @Test func clientWithoutCertificateIsRefused() throws {
        let stack = try TLSStack.require()

        let result = try TestEnvironment.run("/usr/bin/openssl", [
            "s_client", "-connect", "127.0.0.1:\(stack.tlsPort)",
            "-CAfile", stack.certificates.path + "/ca-bundle-overlap.crt", "-verify_return_error",
        ])

        #expect(stack.waitForLog(["event=\"TLS handshake failed\"", "peer did not return a certificate"]))
        #expect(result.standardOutput.contains("Verify return code: 0 (ok)"))
    }

    @Test func revokedClientIsRefused() throws {
        let stack = try TLSStack.require()

        _ = try TestEnvironment.run("/usr/bin/openssl", [
            "s_client", "-connect", "127.0.0.1:\(stack.tlsPort)",
            "-CAfile", stack.certificates.path + "/ca-bundle-overlap.crt",
            "-cert", stack.certificates.path + "/client-revoked.crt", "-key", stack.certificates.path + "/client-revoked.key",
        ])

        #expect(stack.waitForLog(["event=\"TLS handshake failed\"", "certificate revoked"]))
    }

    /// Requests flow through stunnel while the server certificate and CA
    /// bundle move to the second demo CA and mailcloak gets SIGHUP.
    @Test func sighupRotationLosesNoRequest() throws {
        let stack = try TLSStack.require()
        let failures = Atomic<Int>(0)
        let requests = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        let port = stack.mx1Port
        let workers = (0..<2).map { index in
            Thread {
                var socket: PlainSocket?
                var sent = 0
                while !stop.load(ordering: .relaxed) {
                    // One worker keeps its connection; the other reconnects every 10 requests.
                    if socket == nil || (index == 1 && sent % 10 == 0) { socket = PlainSocket(port: port) }
                    sent += 1
                    if socket?.exchange(netstring("alias sales@example.com"), until: ",") == netstring("OK alice@example.com") {
                        requests.add(1, ordering: .relaxed)
                    } else {
                        failures.add(1, ordering: .relaxed)
                        socket = nil
                    }
                }
            }
        }
        workers.forEach { $0.start() }
        func waitForRequests(_ count: Int) {
            let target = requests.load(ordering: .relaxed) + count
            for _ in 0..<1000 where requests.load(ordering: .relaxed) < target { usleep(10_000) }
        }
        waitForRequests(100)
        for (name, source) in [("ca.crt", "ca-bundle-overlap.crt"), ("server.key", "server-ca2.key"),
                               ("server.crt", "server-ca2.crt")] {
            let target = stack.live.appendingPathComponent(name).path
            try? FileManager.default.removeItem(atPath: target + ".new")
            try FileManager.default.copyItem(atPath: stack.certificates.path + "/" + source, toPath: target + ".new")
            #expect(rename(target + ".new", target) == 0)
        }
        let reloadsBefore = stack.logCount(["event=\"TLS and access rules reloaded\"", "reason=SIGHUP"])
        kill(stack.mailcloakPID, SIGHUP)
        let reloaded = stack.waitForLog(
            ["event=\"TLS and access rules reloaded\"", "reason=SIGHUP"], count: reloadsBefore + 1)
        waitForRequests(100)
        stop.store(true, ordering: .relaxed)
        for worker in workers { while worker.isExecuting { usleep(10_000) } }

        let fresh = try TestEnvironment.run("/usr/bin/openssl", [
            "s_client", "-connect", "127.0.0.1:\(stack.tlsPort)", "-CAfile", stack.certificates.path + "/ca-bundle-overlap.crt",
            "-cert", stack.certificates.path + "/client-mx1-ca2.crt", "-key", stack.certificates.path + "/client-mx1-ca2.key",
        ])

        #expect(reloaded)
        #expect(failures.load(ordering: .relaxed) == 0)
        #expect(fresh.standardOutput.contains("issuer=CN = mailcloak demo CA 2"))
    }

    @Test func badKeyOnSighupKeepsServing() throws {
        let stack = try TLSStack.require()
        let key = stack.live.appendingPathComponent("server.key").path
        let saved = key + ".saved"
        try? FileManager.default.removeItem(atPath: saved)
        try FileManager.default.copyItem(atPath: key, toPath: saved)
        // The RSA key matches neither demo server certificate.
        try? FileManager.default.removeItem(atPath: key + ".new")
        try FileManager.default.copyItem(atPath: stack.certificates.path + "/server-rsa.key", toPath: key + ".new")
        #expect(rename(key + ".new", key) == 0)
        let failuresBefore = stack.logCount(["event=\"TLS reload failed, keeping", "does not match certificate"])

        kill(stack.mailcloakPID, SIGHUP)
        let rejected = stack.waitForLog(
            ["event=\"TLS reload failed, keeping", "does not match certificate"], count: failuresBefore + 1)
        let socket = try #require(PlainSocket(port: stack.mx1Port))
        let reply = socket.exchange(netstring("alias sales@example.com"), until: ",")
        #expect(rename(saved, key) == 0)

        #expect(rejected)
        #expect(reply == netstring("OK alice@example.com"))
    }

    @Test func sighupReloadsAccessRules() throws {
        let stack = try TLSStack.require()
        let original = try String(contentsOf: stack.configFile, encoding: .utf8)
        let reloadsBefore = stack.logCount(["event=\"TLS and access rules reloaded\"", "reason=SIGHUP"])
        let granted = original.replacingOccurrences(of: "services: [\"socketmap:alias\"]", with: "services: [policy]")
        try granted.write(to: stack.configFile, atomically: true, encoding: .utf8)

        kill(stack.mailcloakPID, SIGHUP)
        let reloaded = stack.waitForLog(
            ["event=\"TLS and access rules reloaded\"", "reason=SIGHUP"], count: reloadsBefore + 1)
        let socket = try #require(PlainSocket(port: stack.mx2Port))
        let reply = socket.exchange(
            "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=alice@example.com\n\n", until: "\n\n")

        // Put the original rules back for the other tests.
        try original.write(to: stack.configFile, atomically: true, encoding: .utf8)
        kill(stack.mailcloakPID, SIGHUP)
        let restored = stack.waitForLog(
            ["event=\"TLS and access rules reloaded\"", "reason=SIGHUP"], count: reloadsBefore + 2)

        #expect(reloaded)
        #expect(reply?.hasPrefix("action=451 4.7.0") == false)
        #expect(reply?.hasPrefix("action=") == true)
        #expect(restored)
    }
}

// MARK: - Rejected clients while a good client keeps getting replies

/// Clients that the listener must reject. Each test first opens a connection
/// through node mx1's stunnel and gets a reply on it, then runs the bad
/// client, then sends another request on the same connection: a rejected
/// client must neither stall nor drop the others.
extension TLSEndToEnd {
    static let aliasRequest = netstring("alias sales@example.com")
    static let aliasReply = netstring("OK alice@example.com")
    static let policyRequest = "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=alice@example.com\n\n"

    /// Opens a connection through mx1's stunnel and checks that it gets a reply.
    static func openGoodConnection(_ stack: TLSStack) throws -> PlainSocket {
        let socket = try #require(PlainSocket(port: stack.mx1Port))
        let first = socket.exchange(aliasRequest, until: ",")
        try #require(first == aliasReply)
        return socket
    }

    /// s_client options after `-connect`: it verifies the server as stunnel
    /// does, prints only the bytes the server sends, and exits when its input ends.
    static func sClientArguments(_ stack: TLSStack, certificate: String, key: String) -> [String] {
        [
            "-CAfile", stack.certificates.path + "/ca-bundle-overlap.crt", "-verify_return_error",
            "-verify_hostname", "mailcloak.test", "-cert", certificate, "-key", key, "-quiet", "-no_ign_eof",
        ]
    }

    /// Runs s_client with a client certificate that the handshake must reject,
    /// keeping its input open until it exits, so it reports the server's alert.
    static func runRejectedClient(_ stack: TLSStack, certificate: String, key: String) throws -> SClientResult {
        let client = try SClientSession(
            port: stack.tlsPort, arguments: sClientArguments(stack, certificate: certificate, key: key),
            scratch: stack.directory)
        return client.waitForExit()
    }

    @Test func foreignCAClientIsRejected() throws {
        let stack = try TLSStack.require()
        let foreign = try ForeignClientCertificate.make(in: stack.directory.appendingPathComponent("foreign-ca"))
        let good = try Self.openGoodConnection(stack)
        let mark = stack.logMark()

        let result = try Self.runRejectedClient(stack, certificate: foreign.certificate.path, key: foreign.key.path)
        let failure = stack.waitForEvent(after: mark, matching: ["event": "TLS handshake failed", "listener": "mtls"])
        let closed = stack.waitForClosedEvent(after: mark, of: failure)
        let reply = good.exchange(Self.aliasRequest, until: ",")

        #expect(failure?["level"] == "warning")
        #expect(failure?["reason"] == "client certificate rejected: unable to get local issuer certificate")
        #expect(closed?["reason"] == "tls_handshake_failed")
        #expect(result.status == 1)
        #expect(result.standardOutput == "")
        #expect(result.errorReasons == ["tlsv1 alert unknown ca"])
        #expect(reply == Self.aliasReply)
    }

    @Test func expiredClientIsRejected() throws {
        let stack = try TLSStack.require()
        let good = try Self.openGoodConnection(stack)
        let mark = stack.logMark()

        let result = try Self.runRejectedClient(
            stack, certificate: stack.certificates.path + "/client-expired.crt",
            key: stack.certificates.path + "/client-expired.key")
        let failure = stack.waitForEvent(after: mark, matching: ["event": "TLS handshake failed", "listener": "mtls"])
        let closed = stack.waitForClosedEvent(after: mark, of: failure)
        let reply = good.exchange(Self.aliasRequest, until: ",")

        #expect(failure?["level"] == "warning")
        #expect(failure?["reason"] == "client certificate rejected: certificate has expired")
        #expect(closed?["reason"] == "tls_handshake_failed")
        #expect(result.status == 1)
        #expect(result.standardOutput == "")
        #expect(result.errorReasons == ["sslv3 alert certificate expired"])
        #expect(reply == Self.aliasReply)
    }

    /// mx2 has a valid certificate but only the alias map. Its policy requests
    /// and its lookups in another map get the access-denied replies, each
    /// connection stays open for the next request, and each denial is logged
    /// once per connection.
    @Test func nodeWithoutGrantDeniedOverTLS() throws {
        let stack = try TLSStack.require()
        let arguments = Self.sClientArguments(
            stack, certificate: stack.certificates.path + "/client-mx2.crt",
            key: stack.certificates.path + "/client-mx2.key")
        let identity = "cn:mx2,dns:mx2,uri:spiffe://mail.example/node/mx2"
        let policyDenial = "action=451 4.7.0 Policy service access denied for this client\n\n"
        let mapDenial = netstring("PERM client not authorized for map domain")
        let good = try Self.openGoodConnection(stack)
        let mark = stack.logMark()

        // A connection speaks one protocol, so each protocol gets its own s_client.
        let policyClient = try SClientSession(port: stack.tlsPort, arguments: arguments, scratch: stack.directory)
        policyClient.send(Self.policyRequest)
        _ = policyClient.read(until: policyDenial)
        policyClient.send(Self.policyRequest)
        _ = policyClient.read(until: policyDenial + policyDenial)
        let policy = policyClient.finish()
        let mapClient = try SClientSession(port: stack.tlsPort, arguments: arguments, scratch: stack.directory)
        mapClient.send(netstring("domain example.com"))
        _ = mapClient.read(until: mapDenial)
        mapClient.send(Self.aliasRequest)
        _ = mapClient.read(until: mapDenial + Self.aliasReply)
        mapClient.send(netstring("domain example.com"))
        _ = mapClient.read(until: mapDenial + Self.aliasReply + mapDenial)
        let map = mapClient.finish()
        let policyDenied = stack.waitForEvent(after: mark, matching: ["event": "access denied", "service": "policy"])
        let mapDenied = stack.waitForEvent(after: mark, matching: ["event": "access denied", "service": "socketmap"])
        let denials = stack.events(after: mark, matching: ["event": "access denied"])
        let reply = good.exchange(Self.aliasRequest, until: ",")

        #expect(policy.standardOutput == policyDenial + policyDenial)
        #expect(policy.status == 0)
        #expect(map.standardOutput == mapDenial + Self.aliasReply + mapDenial)
        #expect(map.status == 0)
        #expect(policyDenied?["level"] == "warning")
        #expect(policyDenied?["user"] == identity)
        #expect(mapDenied?["map"] == "domain")
        #expect(mapDenied?["user"] == identity)
        #expect(denials.count == 2)
        #expect(reply == Self.aliasReply)
    }

    @Test func plainTextOnTLSPortIsClosed() throws {
        let stack = try TLSStack.require()
        let good = try Self.openGoodConnection(stack)
        let plain = try #require(RawSocket(port: stack.tlsPort))
        let mark = stack.logMark()

        let sent = plain.send(Array(Self.policyRequest.utf8))
        let ending = plain.waitForClose(timeout: 10)
        let failure = stack.waitForEvent(after: mark, matching: ["event": "TLS handshake failed", "peer": plain.peer])
        let closed = stack.waitForClosedEvent(after: mark, of: failure)
        let reply = good.exchange(Self.aliasRequest, until: ",")

        #expect(sent)
        #expect(ending == .closed(received: []))
        #expect(failure?["level"] == "warning")
        #expect(failure?["reason"] == "error:0A00010B:SSL routines::wrong version number")
        #expect(closed?["reason"] == "tls_handshake_failed")
        #expect(reply == Self.aliasReply)
    }

    /// Clients that send four bytes of a TLS record header and then nothing
    /// are closed at the listener's handshake_timeout (2 s here). Four of them
    /// make it likely that one shares a reactor thread with the good connection.
    @Test func stalledHandshakeTimesOut() throws {
        let stack = try TLSStack.require()
        let good = try Self.openGoodConnection(stack)
        let stalled = try (0..<4).map { _ in try #require(RawSocket(port: stack.tlsPort)) }
        let mark = stack.logMark()

        let sent = stalled.map { $0.send([0x16, 0x03, 0x01, 0x00]) }
        let whileStalled = good.exchange(Self.aliasRequest, until: ",")
        let endings = stalled.map { $0.waitForClose(timeout: 10) }
        let timedOut = stalled.map { socket in
            stack.waitForEvent(after: mark, matching: ["event": "TLS handshake timed out", "peer": socket.peer])
        }
        let closeReasons = timedOut.map { stack.waitForClosedEvent(after: mark, of: $0)?["reason"] }
        let afterClose = good.exchange(Self.aliasRequest, until: ",")

        #expect(sent == [true, true, true, true])
        #expect(whileStalled == Self.aliasReply)
        #expect(endings == Array(repeating: .closed(received: []), count: 4))
        #expect(timedOut.map { $0?["level"] } == ["warning", "warning", "warning", "warning"])
        #expect(timedOut.map { $0?["listener"] } == ["mtls", "mtls", "mtls", "mtls"])
        #expect(closeReasons == Array(repeating: "tls_handshake_timeout", count: 4))
        #expect(afterClose == Self.aliasReply)
    }

    /// A client that keeps sending one byte of its ClientHello every half
    /// second never finishes it: the handshake deadline counts from the
    /// connect, so activity does not extend it.
    @Test func tricklingHandshakeTimesOut() throws {
        let stack = try TLSStack.require()
        let good = try Self.openGoodConnection(stack)
        let trickling = try #require(RawSocket(port: stack.tlsPort))
        let mark = stack.logMark()
        // A handshake record header that announces 512 bytes, then the start of a ClientHello.
        let bytes: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]
            + Array(repeating: 0x41, count: 32)

        var ending = RawSocketEnding.stillOpen(received: [])
        var replies: [String?] = []
        for byte in bytes {
            guard trickling.send([byte]) else {
                // The server already closed the connection; collect how it ended.
                ending = trickling.waitForClose(timeout: 10)
                break
            }
            replies.append(good.exchange(Self.aliasRequest, until: ","))
            ending = trickling.waitForClose(timeout: 0.5)
            if case .closed = ending { break }
        }
        let timedOut = stack.waitForEvent(
            after: mark, matching: ["event": "TLS handshake timed out", "peer": trickling.peer])

        #expect(ending == .closed(received: []))
        #expect(timedOut?["level"] == "warning")
        #expect(!replies.isEmpty)
        #expect(replies.filter { $0 != Self.aliasReply }.isEmpty)
    }
}
