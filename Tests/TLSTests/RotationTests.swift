// Loading and reloading TLS material: bad files are refused with a clear
// message and leave the serving context in place; good files replace it for
// new handshakes while clients keep getting answers.
import COpenSSL
import Config
import Log
import Foundation
import Reactor
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Copies demo files into a folder of their own, so a test can replace them.
private func privateCopy(_ names: [String]) throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tls-live-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    for name in names {
        try FileManager.default.copyItem(atPath: Fixture.path(name), toPath: folder + "/" + name)
    }
    return folder
}

/// Replaces `target` with a copy of the demo file `source` through a rename, as deployment tools do.
private func replace(_ target: String, with source: String) throws {
    let temporary = target + ".new"
    try? FileManager.default.removeItem(atPath: temporary)
    try FileManager.default.copyItem(atPath: Fixture.path(source), toPath: temporary)
    guard rename(temporary, target) == 0 else { throw POSIXError(.EIO) }
}

@Suite(.serialized) struct RotationTests {
    @Test func encryptedKeyIsRefusedAtLoad() throws {
        let folder = try privateCopy(["server.crt"])
        let status = Fixture.runTool("/usr/bin/openssl", [
            "pkey", "-in", Fixture.path("server.key"), "-out", folder + "/server.key", "-aes256", "-passout", "pass:secret",
        ])
        #expect(status == 0)
        let config = ListenerTLSConfig(certificate: folder + "/server.crt", key: folder + "/server.key",
                                       clientCA: Fixture.path("ca.crt"))
        #expect(throws: TLSError("private key \(folder)/server.key is encrypted; mailcloak needs an unencrypted key file (protect it with file permissions)")) {
            try TLSContext.load(config)
        }
    }

    @Test func mismatchedKeyIsRefusedAtLoad() throws {
        let config = Fixture.tlsConfig(key: "server-ca2.key")
        #expect(throws: TLSError("private key \(Fixture.path("server-ca2.key")) does not match certificate \(Fixture.path("server.crt"))")) {
            try TLSContext.load(config)
        }
    }

    @Test func expiredServerCertificateIsRefused() throws {
        let config = Fixture.tlsConfig()
        let future = wallClockSeconds() + 5 * 366 * 86400
        #expect(throws: TLSError.self) { try TLSContext.load(config, now: future) }
    }

    @Test func loadedContextReportsExpiries() throws {
        let context = try TLSContext.load(Fixture.tlsConfig())
        #expect(context.expiries.map(\.path) == [Fixture.path("server.crt"), Fixture.path("ca.crt")])
        #expect(context.expiries.allSatisfy { $0.notAfter > wallClockSeconds() })
    }

    @Test func badReloadKeepsServingOldCertificate() throws {
        let server = try TLSServer()
        defer { server.stop() }
        var broken = Fixture.listenerConfig()
        broken.tls?.key = Fixture.path("server-ca2.key")
        let error = server.security.reload(broken, reason: "test")
        #expect(error != nil)
        let client = TLSClient(port: server.port, certificate: "client-mx1.crt", key: "client-mx1.key")
        #expect(client.request("old") == "old policy=true maps=alias cn=mx1 host=127.0.0.1")
        #expect(client.serverFingerprint == fileFingerprint("server.crt"))
        #expect(server.security.counters.reloadFailures.load(ordering: .relaxed) == 1)
    }

    @Test func reloadChangesAccessRules() throws {
        let server = try TLSServer()
        defer { server.stop() }
        var config = Fixture.listenerConfig()
        config.acl = [ACLRule(name: "none")]
        config.acl![0].identities = [.commonName("nobody")]
        config.acl![0].policy = true
        #expect(server.security.reload(config, reason: "test") == nil)
        let client = TLSClient(port: server.port, certificate: "client-mx1.crt", key: "client-mx1.key")
        #expect(client.request("now") == "now policy=false maps= cn=mx1 host=127.0.0.1")
    }

    /// Clients keep sending requests, on kept and on new connections, while the
    /// server certificate and CA bundle move to the second CA: no request fails,
    /// and connections opened afterwards see the new certificate.
    @Test func rotationUnderLoadLosesNoRequest() throws {
        let folder = try privateCopy(["server.crt", "server.key", "ca.crt"])
        var tls = ListenerTLSConfig(certificate: folder + "/server.crt", key: folder + "/server.key",
                                    clientCA: folder + "/ca.crt")
        tls.reloadInterval = 1
        var config = Fixture.listenerConfig(tls: tls)
        config.acl = Fixture.rules()
        let server = try TLSServer(config)
        defer { server.stop() }
        let watcher = SecurityWatcher([server.security])
        watcher.start()
        defer { watcher.stop() }

        let failures = Atomic<Int>(0)
        let requests = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        let port = server.port
        let threads = (0..<4).map { index in
            Thread {
                var kept: TLSClient?
                while !stop.load(ordering: .relaxed) {
                    // Half the workers keep one connection; the others reconnect every 20 requests.
                    if kept == nil || (index % 2 == 1 && requests.load(ordering: .relaxed) % 20 == 0) {
                        kept = TLSClient(port: port, certificate: "client-mx1.crt", key: "client-mx1.key",
                                         trust: "ca-bundle-overlap.crt")
                    }
                    if kept?.request("load") == nil {
                        failures.add(1, ordering: .relaxed)
                        kept = nil
                    } else {
                        requests.add(1, ordering: .relaxed)
                    }
                }
            }
        }
        threads.forEach { $0.start() }
        func waitForRequests(_ count: Int) {
            let target = requests.load(ordering: .relaxed) + count
            for _ in 0..<1000 where requests.load(ordering: .relaxed) < target { usleep(10_000) }
        }
        waitForRequests(200)
        // The overlap bundle first, so that clients of both CAs are accepted; then the new server certificate.
        try replace(folder + "/ca.crt", with: "ca-bundle-overlap.crt")
        #expect(server.security.reload(config, reason: "SIGHUP") == nil)
        waitForRequests(200)
        try replace(folder + "/server.key", with: "server-ca2.key")
        try replace(folder + "/server.crt", with: "server-ca2.crt")
        // The watcher notices the changed files within its interval; a reload between the two renames
        // finds a key that does not match and keeps the old context until the certificate arrives.
        for _ in 0..<500 where server.security.context?.serverFingerprint != fileFingerprint("server-ca2.crt") {
            usleep(10_000)
        }
        waitForRequests(200)
        stop.store(true, ordering: .relaxed)
        for thread in threads { while thread.isExecuting { usleep(10_000) } }

        #expect(failures.load(ordering: .relaxed) == 0)
        let fresh = TLSClient(port: port, certificate: "client-mx1-ca2.crt", key: "client-mx1-ca2.key",
                              trust: "ca-bundle-overlap.crt")
        #expect(fresh.request("new") == "new policy=true maps=alias cn=mx1 host=127.0.0.1")
        #expect(fresh.serverFingerprint == fileFingerprint("server-ca2.crt"))
    }
}

/// Creates a logger that writes to a new temporary file, and returns it with the file's path.
private func fileLogger() -> (Logger, String) {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("tls-log-\(UUID().uuidString)").path
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    return (Logger(fileDescriptor: descriptor), path)
}

@Suite struct ExpiryWarningTests {
    @Test func certificateInsideWindowIsLogged() throws {
        let (logger, path) = fileLogger()
        var config = Fixture.listenerConfig()
        config.tls?.expiryWarning = 400 * 86400
        _ = try ListenerSecurity(config: config, logger: logger)
        let log = try String(contentsOfFile: path, encoding: .utf8)
        #expect(log.contains("event=\"certificate expires soon\" listener=mtls path=\(Fixture.path("server.crt"))"))
    }

    @Test func certificateOutsideWindowIsQuiet() throws {
        let (logger, path) = fileLogger()
        _ = try ListenerSecurity(config: Fixture.listenerConfig(), logger: logger)
        let log = try String(contentsOfFile: path, encoding: .utf8)
        #expect(!log.contains("certificate expires soon"))
    }
}
