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
