// What the fleet scenarios do to the running stack: bring it back to three
// healthy instances, send messages in parallel or with delivery, rotate the
// server certificate with openssl, and read the certificate a TLS endpoint
// presents with `openssl s_client`.

import Dispatch
import Foundation
import Locking
import RedisCache

#if canImport(Glibc)
    import Glibc
#endif

extension FleetStack {
    /// Starts whatever an earlier scenario left stopped (PostgreSQL, Redis, a
    /// killed or drained daemon) and waits until every daemon reports ready on
    /// /readyz and HAProxy shows all three servers UP.
    func ensureHealthy() throws {
        try postgres.start()
        if (try? redis.command(["PING"])) != .status("PONG") {
            guard try redis.start() else {
                throw StackSetupError.notReady(service: "redis-server on port \(redis.port)", seconds: 5, log: "")
            }
        }
        for daemon in daemons {
            // Reaps a daemon that a scenario killed or drained, so its pid is nil.
            _ = daemon.waitForExit(timeout: 0)
            if daemon.pid == nil {
                try daemon.launch()
            }
        }
        for daemon in daemons {
            try daemon.waitUntilReady()
        }
        guard try haproxy.waitForState("UP", servers: Self.daemonNames) else {
            throw StackSetupError.notReady(
                service: "haproxy servers (\(try haproxy.serverStates()))", seconds: FleetHAProxy.stateTimeout,
                log: haproxy.errors())
        }
    }

    /// Sends the messages at the same time, one thread each, and returns the outcomes in the same order.
    func sendConcurrently(_ messages: [FleetMessage]) -> [FleetOutcome] {
        let results = Locked<[Int: FleetOutcome]>([:])
        let group = DispatchGroup()
        for (index, message) in messages.enumerated() {
            group.enter()
            Thread {
                let outcome = send(message)
                results.withLock { $0[index] = outcome }
                group.leave()
            }.start()
        }
        group.wait()
        return results.withLock { results in messages.indices.compactMap { results[$0] } }
    }

    /// Sends a whole message from outside to `recipient`, through DATA.
    func deliver(to recipient: String, subject: String) throws -> SwaksResult {
        try Swaks.run([
            "--server", "127.0.0.1:\(postfix.smtpPort)", "--ehlo", EndToEndStack.heloName, "--timeout", "30",
            "--from", "sender@remote.test", "--to", recipient, "--header", "Subject: \(subject)",
        ])
    }

    /// Returns `serial=HEX` of a PEM certificate file.
    func certificateSerial(file: URL) throws -> String {
        let result = try TestEnvironment.runChecked("/usr/bin/openssl", ["x509", "-noout", "-serial", "-in", file.path])
        return result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Issues a new server key and certificate from the demo CA, with a random
    /// serial, and renames both over the files in `live`. Returns the new `serial=HEX`.
    func rotateServerCertificate() throws -> String {
        let keyFile = live.appendingPathComponent("rotated.key")
        let requestFile = live.appendingPathComponent("rotated.csr")
        let extensionFile = live.appendingPathComponent("rotated.ext")
        let certificateFile = live.appendingPathComponent("rotated.crt")
        try TestEnvironment.runChecked("/usr/bin/openssl", [
            "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", keyFile.path, "-out", requestFile.path, "-subj", "/CN=mailcloak.test",
        ])
        try """
            basicConstraints=critical,CA:FALSE
            keyUsage=critical,digitalSignature
            extendedKeyUsage=serverAuth
            subjectAltName=DNS:mailcloak.test,DNS:localhost,IP:127.0.0.1

            """.write(to: extensionFile, atomically: true, encoding: .utf8)
        let serial = "0x" + (0..<16).map { _ in String(UInt8.random(in: 0...15), radix: 16) }.joined()
        try TestEnvironment.runChecked("/usr/bin/openssl", [
            "x509", "-req", "-in", requestFile.path, "-CA", certificates.appendingPathComponent("ca.crt").path,
            "-CAkey", certificates.appendingPathComponent("ca.key").path, "-set_serial", serial, "-days", "30",
            "-extfile", extensionFile.path, "-out", certificateFile.path,
        ])
        // The key first, then the certificate: a reload between the two renames fails and keeps the old pair.
        try renameOver(keyFile, live.appendingPathComponent("server.key"))
        try renameOver(certificateFile, live.appendingPathComponent("server.crt"))
        try? FileManager.default.removeItem(at: requestFile)
        try? FileManager.default.removeItem(at: extensionFile)
        return try certificateSerial(file: live.appendingPathComponent("server.crt"))
    }

    /// Opens a new TLS connection with node mx1's certificate to 127.0.0.1:`port`
    /// and returns `serial=HEX` of the certificate the server presents.
    func presentedSerial(port: UInt16) throws -> String {
        let script = """
            openssl s_client -connect "127.0.0.1:$1" -servername mailcloak.test -cert "$2" -key "$3" \
                -CAfile "$4" -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial
            """
        let result = try TestEnvironment.runChecked("/bin/sh", [
            "-c", script, "sh", String(port), certificates.appendingPathComponent("client-mx1.crt").path,
            certificates.appendingPathComponent("client-mx1.key").path, certificates.appendingPathComponent("ca.crt").path,
        ], timeout: 15)
        return result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Opens a TLS connection with node mx1's certificate to 127.0.0.1:`port`
    /// and keeps it open for a second, so that the session tickets arrive.
    /// Offers the session saved in `offering`, saves the new one to `saving`,
    /// and returns openssl s_client's verdict: `New` or `Reused`.
    func handshake(port: UInt16, offering: URL? = nil, saving: URL? = nil) throws -> String {
        let script = """
            port=$1 cert=$2 key=$3 ca=$4
            shift 4
            sleep 1 | openssl s_client -connect "127.0.0.1:$port" -servername mailcloak.test -cert "$cert" \\
                -key "$key" -CAfile "$ca" -verify_return_error "$@" 2>/dev/null | grep -E -m 1 -o '^(New|Reused),'
            """
        var arguments = [
            "-c", script, "sh", String(port), certificates.appendingPathComponent("client-mx1.crt").path,
            certificates.appendingPathComponent("client-mx1.key").path, certificates.appendingPathComponent("ca.crt").path,
        ]
        if let offering { arguments += ["-sess_in", offering.path] }
        if let saving { arguments += ["-sess_out", saving.path] }
        let result = try TestEnvironment.runChecked("/bin/sh", arguments, timeout: 15)
        return result.standardOutput.trimmingCharacters(in: CharacterSet(charactersIn: ", \n"))
    }

    private func renameOver(_ source: URL, _ destination: URL) throws {
        guard rename(source.path, destination.path) == 0 else {
            let reason = String(cString: strerror(errno))
            throw StackSetupError.unexpectedOutput(
                command: "rename \(source.path) to \(destination.path)", output: reason)
        }
    }
}
