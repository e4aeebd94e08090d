// The metrics endpoint of a running `mailcloak serve`: exact counter values
// after a few policy and socketmap requests, a scrape that promtool accepts,
// the health paths, readiness before the first snapshot, and the shipped
// alert rules. Needs MAILCLOAK_TEST_DATABASE_URL (scripts/test.sh sets it)
// and promtool from Debian's prometheus package; no Keycloak and no Postfix.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.serialized)
struct MetricsEndToEnd {
    /// Maximum wait for the daemon to report ready, in seconds.
    static let readyTimeout = 20.0

    @Test func scrapeCountsRequestsExactly() throws {
        let settings = try StackSettings.fromEnvironment()
        let database = try TestDatabase.create(adminURL: settings.adminDatabaseURL)
        defer { try? database.drop() }
        let ctl = MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url)
        try ctl.runChecked(["migrate"])
        try ctl.runChecked(["domains", "add", "example.com"])
        try ctl.runChecked(["aliases", "add", "sales@example.com", "alice"])
        let daemon = try MetricsDaemon.start(settings: settings, databaseURL: database.url)
        defer { daemon.stop() }
        let ready = try daemon.waitForReady(timeout: Self.readyTimeout)
        try #require(ready.status == 200, "readyz: \(ready.body) log: \(daemon.log())")

        let relay = try daemon.policy(sender: "a@remote.test", recipient: "x@elsewhere.test")
        let alias = try daemon.policy(sender: "a@remote.test", recipient: "sales@example.com")
        let replies = try daemon.socketmap([
            "alias sales@example.com", "domain example.com", "domain remote.test", "nomap key",
        ])
        // A first byte that starts neither protocol: the daemon closes with a protocol error.
        let garbage = try LoopbackExchange.send([0x01, 0x0A], port: daemon.port) { _ in false }
        // The session counts a close after the socket is closed, so the client can see it first.
        let protocolError = "mailcloak_connections_closed_total{reason=\"protocol_error\"} 1"
        let scrape = try daemon.waitForScrape(containing: protocolError, timeout: 5)
        let lines = Set(scrape.body.split(separator: "\n").map(String.init))
        let check = try promtool(["check", "metrics"], input: scrape.body, in: daemon.directory)

        #expect(relay == "action=550 5.7.1 Recipient domain not local")
        #expect(alias == "action=DUNNO")
        #expect(replies == ["OK alice@example.com", "OK example.com", "NOTFOUND ", "PERM unknown map nomap"])
        #expect(garbage == [])
        #expect(scrape.status == 200)
        for line in [
            protocolError,
            "mailcloak_requests_total{service=\"policy\",decision=\"reject\"} 1",
            "mailcloak_requests_total{service=\"policy\",decision=\"dunno\"} 1",
            "mailcloak_requests_total{service=\"policy\",decision=\"defer\"} 0",
            "mailcloak_requests_total{service=\"socketmap\",map=\"alias\",decision=\"ok\"} 1",
            "mailcloak_requests_total{service=\"socketmap\",map=\"domain\",decision=\"ok\"} 1",
            "mailcloak_requests_total{service=\"socketmap\",map=\"domain\",decision=\"notfound\"} 1",
            "mailcloak_requests_total{service=\"socketmap\",map=\"other\",decision=\"perm\"} 1",
            "mailcloak_request_duration_seconds_count{service=\"policy\"} 2",
            "mailcloak_request_duration_seconds_count{service=\"socketmap\"} 4",
            "mailcloak_connections_accepted_total 4",
            "mailcloak_snapshot_loaded 1",
            "mailcloak_snapshot_rows{table=\"domains\"} 1",
            "mailcloak_snapshot_rows{table=\"aliases\"} 1",
            "mailcloak_store_connected 1",
            "mailcloak_draining 0",
            "mailcloak_build_info{version=\"0.1.0\"} 1",
        ] {
            #expect(lines.contains(line), "missing \(line)")
        }
        #expect(check.status == 0, "promtool: \(check.standardOutput) \(check.standardError)")
    }

    @Test func healthPathsAnswerStatusCodes() throws {
        let settings = try StackSettings.fromEnvironment()
        let database = try TestDatabase.create(adminURL: settings.adminDatabaseURL)
        defer { try? database.drop() }
        try MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url).runChecked(["migrate"])
        let daemon = try MetricsDaemon.start(settings: settings, databaseURL: database.url)
        defer { daemon.stop() }

        let ready = try daemon.waitForReady(timeout: Self.readyTimeout)
        let health = try daemon.get("/healthz")
        let missing = try daemon.get("/nothing")
        let post = try daemon.request("POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")

        #expect(ready.status == 200)
        #expect(ready.body == "ready\n")
        #expect(health.status == 200)
        #expect(health.body == "ok\n")
        #expect(missing.status == 404)
        #expect(post.status == 405)
    }

    /// A database address where nothing listens: the daemon starts but never loads a snapshot.
    @Test func readinessFailsWithoutSnapshot() throws {
        let settings = try StackSettings.fromEnvironment()
        let closedPort = try TestEnvironment.freePorts(count: 1)
        let url = "postgresql://mailcloak@127.0.0.1:\(closedPort)/none?connect_timeout=1"
        let daemon = try MetricsDaemon.start(settings: settings, databaseURL: url)
        defer { daemon.stop() }

        // The listeners start after the first snapshot or after a 5 s wait for it.
        let deadline = Date().addingTimeInterval(Self.readyTimeout)
        var ready = try daemon.waitForHTTP("/readyz", timeout: Self.readyTimeout)
        while ready.body == "listeners not started\n", Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            ready = try daemon.get("/readyz")
        }
        let health = try daemon.get("/healthz")
        let scrape = try daemon.get("/metrics")
        let lines = Set(scrape.body.split(separator: "\n").map(String.init))

        #expect(ready.status == 503)
        #expect(ready.body.hasPrefix("no database snapshot loaded: cannot connect to PostgreSQL"))
        #expect(health.status == 200)
        #expect(lines.contains("mailcloak_snapshot_loaded 0"))
        #expect(lines.contains("mailcloak_store_connected 0"))
        #expect(lines.contains("mailcloak_store_error 1"))
        #expect(!lines.contains { $0.hasPrefix("mailcloak_snapshot_age_seconds ") })
    }

    /// SIGTERM starts a drain that waits for a half-sent request, and /readyz reports it meanwhile.
    @Test func readinessFailsWhileDraining() throws {
        let settings = try StackSettings.fromEnvironment()
        let database = try TestDatabase.create(adminURL: settings.adminDatabaseURL)
        defer { try? database.drop() }
        try MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url).runChecked(["migrate"])
        let daemon = try MetricsDaemon.start(settings: settings, databaseURL: database.url)
        defer { daemon.stop() }
        let ready = try daemon.waitForReady(timeout: Self.readyTimeout)
        try #require(ready.status == 200, "readyz: \(ready.body) log: \(daemon.log())")

        let client = try LoopbackExchange.connect(port: daemon.port)
        defer { close(client) }
        let partial = Array("request=smtpd_access_policy\n".utf8)
        try #require(send(client, partial, partial.count, Int32(MSG_NOSIGNAL)) == partial.count)
        // The drain reads what is buffered before it decides, so the accept is all that must have happened.
        daemon.waitForLog("connection opened", timeout: 5)
        kill(daemon.pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        var draining = try daemon.get("/readyz")
        while draining.status == 200, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            draining = try daemon.get("/readyz")
        }
        let scrape = try daemon.get("/metrics")
        let lines = Set(scrape.body.split(separator: "\n").map(String.init))

        #expect(draining.status == 503)
        #expect(draining.body == "draining\n")
        #expect(lines.contains("mailcloak_draining 1"))
    }

    /// Dropping the database ends the store's connection, so the snapshot ages past
    /// the smallest allowed max_snapshot_age (20 s) and /readyz turns to 503.
    @Test func readinessFailsOnStaleSnapshot() throws {
        let settings = try StackSettings.fromEnvironment()
        let database = try TestDatabase.create(adminURL: settings.adminDatabaseURL)
        defer { try? database.drop() }
        try MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url).runChecked(["migrate"])
        let daemon = try MetricsDaemon.start(
            settings: settings, databaseURL: database.url,
            databaseSettings: "resync_interval: 10s\n  max_snapshot_age: 20s")
        defer { daemon.stop() }
        let ready = try daemon.waitForReady(timeout: Self.readyTimeout)
        try #require(ready.status == 200, "readyz: \(ready.body) log: \(daemon.log())")

        try database.drop()
        let deadline = Date().addingTimeInterval(45)
        var stale = try daemon.get("/readyz")
        while stale.status == 200, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.5)
            stale = try daemon.get("/readyz")
        }
        let scrape = try daemon.get("/metrics")
        let lines = Set(scrape.body.split(separator: "\n").map(String.init))

        #expect(stale.status == 503)
        #expect(stale.body.hasPrefix("database snapshot is "))
        #expect(stale.body.hasSuffix(" s old, older than database.max_snapshot_age (20 s)\n"))
        #expect(lines.contains("mailcloak_snapshot_loaded 1"))
        #expect(lines.contains("mailcloak_store_connected 0"))
        #expect(lines.contains("mailcloak_snapshot_max_age_seconds 20"))
    }

    /// A mutual-TLS listener with certificates from certs-example/make-certs.sh: handshake counts
    /// after two mx1 clients and one without a certificate, one access denial, and the expiries.
    @Test func tlsListenerCountsAndExpiries() throws {
        let settings = try StackSettings.fromEnvironment()
        let database = try TestDatabase.create(adminURL: settings.adminDatabaseURL)
        defer { try? database.drop() }
        try MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url).runChecked(["migrate"])
        let directory = settings.workDirectory.appendingPathComponent("metrics-tls-\(UUID().uuidString.prefix(8))")
        let certificates = directory.appendingPathComponent("certs")
        try TestEnvironment.runChecked("/bin/sh", [
            settings.sourceRoot.appendingPathComponent("certs-example/make-certs.sh").path, certificates.path,
            "mailcloak.test", "mx1",
        ])
        let daemon = try MetricsDaemon.start(settings: settings, databaseURL: database.url, directory: directory) { port in
            """
              - name: mtls
                address: "tcp:127.0.0.1:\(port)"
                tls:
                  certificate: \(certificates.path)/server.crt
                  key: \(certificates.path)/server.key
                  client_ca: \(certificates.path)/ca.crt
                acl:
                  - name: mx1
                    identities: ["cn:mx1"]
                    services: [policy]
            """
        }
        defer { daemon.stop() }
        let ready = try daemon.waitForReady(timeout: Self.readyTimeout)
        try #require(ready.status == 200, "readyz: \(ready.body) log: \(daemon.log())")

        let serverExpiry = try expiry(of: certificates.appendingPathComponent("server.crt"))
        let caExpiry = try expiry(of: certificates.appendingPathComponent("ca.crt"))
        let tlsPort = daemon.port + 3
        try handshake(port: tlsPort, certificates: certificates, clientCertificate: "client-mx1")
        // mx1 may use the policy service only, so a socketmap query is denied.
        try handshake(port: tlsPort, certificates: certificates, clientCertificate: "client-mx1",
                      input: "18:domain example.com,")
        // Without a client certificate the server fails the handshake.
        try handshake(port: tlsPort, certificates: certificates, clientCertificate: nil)
        let failed = "mailcloak_tls_handshakes_total{listener=\"mtls\",result=\"failed\"} 1"
        let completed = "mailcloak_tls_handshakes_total{listener=\"mtls\",result=\"completed\"} 2"
        let denied = "mailcloak_access_denied_total{listener=\"mtls\",service=\"socketmap\"} 1"
        _ = try daemon.waitForScrape(containing: failed, timeout: 5)
        _ = try daemon.waitForScrape(containing: denied, timeout: 5)
        let scrape = try daemon.waitForScrape(containing: completed, timeout: 5)
        let lines = Set(scrape.body.split(separator: "\n").map(String.init))
        let check = try promtool(["check", "metrics"], input: scrape.body, in: daemon.directory)

        let name = "mailcloak_certificate_expiry_timestamp_seconds"
        #expect(lines.contains("\(name){listener=\"mtls\",role=\"server\"} \(serverExpiry)"))
        #expect(lines.contains("\(name){listener=\"mtls\",role=\"client_ca\"} \(caExpiry)"))
        #expect(lines.contains(completed))
        #expect(lines.contains(failed))
        #expect(lines.contains(denied))
        #expect(lines.contains("mailcloak_access_denied_total{listener=\"mtls\",service=\"policy\"} 0"))
        #expect(!lines.contains { $0.contains("listener=\"metrics-e2e\"") })
        #expect(check.status == 0, "promtool: \(check.standardOutput) \(check.standardError)")
    }

    /// Runs one `openssl s_client` handshake against `port`, with the named client certificate or none,
    /// and sends `input` once the handshake is done.
    private func handshake(port: UInt16, certificates: URL, clientCertificate: String?, input: String = "") throws {
        var arguments = [
            "s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", certificates.appendingPathComponent("ca.crt").path,
            "-servername", "mailcloak.test",
        ]
        if let clientCertificate {
            arguments += [
                "-cert", certificates.appendingPathComponent("\(clientCertificate).crt").path,
                "-key", certificates.appendingPathComponent("\(clientCertificate).key").path,
            ]
        }
        // s_client sends its standard input and closes at its end.
        let command = "input=$1; shift; printf '%s' \"$input\" | /usr/bin/openssl \"$@\""
        _ = try TestEnvironment.run("/bin/sh", ["-c", command, "sh", input] + arguments, timeout: 10)
    }

    /// Returns a certificate's notAfter in seconds since 1970, as openssl and date(1) read it.
    private func expiry(of certificate: URL) throws -> Int {
        let command = "date -u -d \"$(openssl x509 -enddate -noout -in \"$1\" | cut -d= -f2)\" +%s"
        let output = try TestEnvironment.runChecked("/bin/sh", ["-c", command, "sh", certificate.path]).standardOutput
        guard let seconds = Int(output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw StackSetupError.unexpectedOutput(command: "openssl x509 -enddate", output: output)
        }
        return seconds
    }

    /// Another socket is bound to the metrics port: the daemon logs the failure and still serves requests.
    @Test func busyMetricsPortKeepsServing() throws {
        let settings = try StackSettings.fromEnvironment()
        let database = try TestDatabase.create(adminURL: settings.adminDatabaseURL)
        defer { try? database.drop() }
        let ctl = MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url)
        try ctl.runChecked(["migrate"])
        try ctl.runChecked(["domains", "add", "example.com"])
        let busyPort = try TestEnvironment.freePorts(count: 1)
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = TestEnvironment.loopbackAddress(port: busyPort)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(bound == 0 && listen(holder, 1) == 0)

        let daemon = try MetricsDaemon.start(settings: settings, databaseURL: database.url, metricsPort: busyPort)
        defer { daemon.stop() }
        let logged = daemon.waitForLog("event=\"metrics endpoint not started\"", timeout: Self.readyTimeout)
        let started = daemon.waitForLog("event=\"mailcloak started\"", timeout: Self.readyTimeout)
        let replies = try daemon.socketmap(["domain example.com"])

        #expect(logged)
        #expect(started)
        #expect(replies == ["OK example.com"])
    }

    @Test func alertRulesPassPromtool() throws {
        let rules = TestEnvironment.repositoryRoot.appendingPathComponent("deploy/monitoring/mailcloak-alerts.yml")
        let result = try TestEnvironment.run("/usr/bin/promtool", ["check", "rules", rules.path])
        #expect(result.status == 0, "promtool: \(result.standardOutput) \(result.standardError)")
    }

    @Test func dashboardIsValidJSON() throws {
        let path = TestEnvironment.repositoryRoot.appendingPathComponent("deploy/monitoring/mailcloak-dashboard.json")
        let data = try #require(FileManager.default.contents(atPath: path.path))
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let panels = object?["panels"] as? [[String: Any]] ?? []
        #expect(object?["title"] as? String == "mailcloak")
        #expect(panels.count == 14)
    }

    /// Runs promtool with `input` on standard input, through a file in `directory`.
    private func promtool(_ arguments: [String], input: String, in directory: URL) throws -> CommandResult {
        let file = directory.appendingPathComponent("scrape.txt")
        try input.write(to: file, atomically: true, encoding: .utf8)
        let command = "/usr/bin/promtool " + arguments.joined(separator: " ") + " < \"$1\""
        return try TestEnvironment.run("/bin/sh", ["-c", command, "sh", file.path])
    }
}

/// One HTTP reply: status code and body.
struct HTTPReply: Sendable {
    let status: Int
    let body: String
}

/// `mailcloak serve` with one plain TCP listener and the metrics endpoint on free loopback ports.
struct MetricsDaemon: Sendable {
    let pid: pid_t
    let port: UInt16
    let metricsPort: UInt16
    let directory: URL
    let logFile: URL

    /// Writes the configuration and starts the daemon; `extraListeners` is YAML appended to the listener list.
    static func start(settings: StackSettings, databaseURL: String, directory: URL? = nil,
                      databaseSettings: String = "", metricsPort: UInt16? = nil,
                      extraListeners: (UInt16) -> String = { _ in "" }) throws -> MetricsDaemon {
        let directory = directory ?? settings.workDirectory
            .appendingPathComponent("metrics-e2e-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // The listener, the metrics endpoint, a closed port for Keycloak, and one for an extra listener.
        let ports = try TestEnvironment.freePorts(count: 4)
        // Keycloak is never reached: the requests in these tests need no identity lookup.
        let configuration = """
            listeners:
              - name: metrics-e2e
                address: "tcp:127.0.0.1:\(ports)"
            \(extraListeners(ports + 3))
            server:
              reactor_threads: 2
              worker_threads: 2
              allow_root: true
            database:
              url: "\(databaseURL)"
              \(databaseSettings)
            identity:
              provider: keycloak
              keycloak:
                base_url: "http://127.0.0.1:\(ports + 2)"
                realm: none
                client_id: mailcloak
                client_secret: unused
                request_timeout: 1s
                connect_timeout: 1s
            metrics:
              listen: "127.0.0.1:\(metricsPort ?? ports + 1)"
            log:
              level: debug

            """
        let configFile = directory.appendingPathComponent("mailcloak.yaml")
        try configuration.write(to: configFile, atomically: true, encoding: .utf8)
        let logFile = directory.appendingPathComponent("mailcloak.log")
        let pid = try TestEnvironment.launch(
            settings.mailcloakPath, ["serve", "--config", configFile.path],
            outputPath: directory.appendingPathComponent("mailcloak.out").path, errorPath: logFile.path)
        return MetricsDaemon(
            pid: pid, port: ports, metricsPort: metricsPort ?? ports + 1, directory: directory, logFile: logFile)
    }

    func log() -> String { TestEnvironment.readText(logFile) }

    /// Waits until the log contains `text`, and returns whether it did.
    @discardableResult
    func waitForLog(_ text: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !log().contains(text) {
            guard Date() < deadline else { return false }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return true
    }

    /// Sends SIGTERM and waits for the exit (SIGKILL after 10 s).
    func stop() {
        TestEnvironment.terminate(pid)
    }

    /// Polls `path` until the endpoint responds, and returns the first reply.
    func waitForHTTP(_ path: String, timeout: Double) throws -> HTTPReply {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let reply = try? get(path) { return reply }
            if let status = TestEnvironment.exitStatus(of: pid) {
                throw StackSetupError.exited(service: "mailcloak", status: status, log: log())
            }
            guard Date() < deadline else {
                throw StackSetupError.notReady(service: "mailcloak metrics", seconds: timeout, log: log())
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Polls /readyz until it reports 200 or `timeout` passes, and returns the last reply.
    func waitForReady(timeout: Double) throws -> HTTPReply {
        let deadline = Date().addingTimeInterval(timeout)
        var reply = try waitForHTTP("/readyz", timeout: timeout)
        while reply.status != 200, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            reply = try get("/readyz")
        }
        return reply
    }

    /// Scrapes /metrics until a line equals `line` or `timeout` passes, and returns the last scrape.
    func waitForScrape(containing line: String, timeout: Double) throws -> HTTPReply {
        let deadline = Date().addingTimeInterval(timeout)
        var scrape = try get("/metrics")
        while !scrape.body.split(separator: "\n").contains(Substring(line)), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            scrape = try get("/metrics")
        }
        return scrape
    }

    func get(_ path: String) throws -> HTTPReply {
        try request("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    }

    /// Sends raw request text to the metrics port and parses the reply.
    func request(_ text: String) throws -> HTTPReply {
        let reply = try LoopbackExchange.send(Array(text.utf8), port: metricsPort) { _ in false }
        let text = String(decoding: reply, as: UTF8.self)
        guard let headEnd = text.range(of: "\r\n\r\n"), text.hasPrefix("HTTP/1.1 "),
            let status = Int(text.dropFirst(9).prefix(3))
        else {
            throw StackSetupError.unexpectedOutput(command: "HTTP \(text.prefix(40))", output: text)
        }
        return HTTPReply(status: status, body: String(text[headEnd.upperBound...]))
    }

    /// Sends one RCPT-stage policy request on a new connection and returns the action line.
    func policy(sender: String, recipient: String) throws -> String {
        let request = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
            + "client_address=192.0.2.1\nsender=\(sender)\nrecipient=\(recipient)\n\n"
        let reply = try LoopbackExchange.send(Array(request.utf8), port: port) { bytes in
            bytes.count >= 2 && bytes.suffix(2) == [10, 10]
        }
        return String(decoding: reply, as: UTF8.self).trimmingCharacters(in: .newlines)
    }

    /// Sends socketmap queries on one connection and returns each reply's payload.
    func socketmap(_ queries: [String]) throws -> [String] {
        let request = queries.map { "\($0.utf8.count):\($0)," }.joined()
        let reply = try LoopbackExchange.send(Array(request.utf8), port: port) { bytes in
            bytes.filter { $0 == UInt8(ascii: ",") }.count >= queries.count
        }
        var payloads: [String] = []
        var rest = Substring(String(decoding: reply, as: UTF8.self))
        while let colon = rest.firstIndex(of: ":"), let length = Int(rest[..<colon]) {
            let start = rest.index(after: colon)
            let end = rest.index(start, offsetBy: length)
            payloads.append(String(rest[start..<end]))
            rest = rest[rest.index(after: end)...]
        }
        return payloads
    }
}

/// One request and reply over a TCP connection to 127.0.0.1.
enum LoopbackExchange {
    /// Connects, sends `bytes`, and reads until `isComplete` holds, the peer closes, or 10 s pass.
    static func send(_ bytes: [UInt8], port: UInt16, isComplete: ([UInt8]) -> Bool) throws -> [UInt8] {
        let descriptor = try connect(port: port)
        defer { close(descriptor) }
        guard Glibc.send(descriptor, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
            throw StackSetupError.unexpectedOutput(command: "send to 127.0.0.1:\(port)", output: "")
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !isComplete(received) {
            let count = recv(descriptor, &chunk, chunk.count, 0)
            if count <= 0 { break }
            received += chunk[..<count]
        }
        return received
    }

    /// Opens a TCP connection to 127.0.0.1:`port` with a 10 s receive timeout; the caller closes it.
    static func connect(port: UInt16) throws -> Int32 {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw StackSetupError.unexpectedOutput(command: "socket", output: "") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = TestEnvironment.loopbackAddress(port: port)
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(descriptor)
            throw StackSetupError.unexpectedOutput(command: "connect 127.0.0.1:\(port)", output: "connection refused")
        }
        return descriptor
    }
}
