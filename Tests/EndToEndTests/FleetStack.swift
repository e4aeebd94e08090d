// The services of the fleet suite. They start once before its first test and
// stop by process id after its last, also when a start or a test fails.
// They are a PostgreSQL cluster of its own (the scenarios stop it), a
// redis-server, keycloak_dev.py, three mailcloak daemons with mutual-TLS
// listeners that take PROXY v2 headers, HAProxy in front of them, a stunnel client with
// node mx1's certificate (deploy/postfix-node/stunnel-mailcloak.conf), a
// private Dovecot that checks the app's argon2id hash from PostgreSQL and
// OAuth tokens at keycloak_dev.py, and a private Postfix that reaches mailcloak only through
// stunnel and HAProxy. Must run as root, because Postfix and Dovecot do.

import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The running services of one fleet suite run.
struct FleetStack: SuiteStack {
    /// The app seeded with `mailcloakctl apps add`, its secret and its one allowed sender.
    static let appID = "crm"
    static let appSecret = "crm-fleet-secret"
    static let appSender = "noreply@example.com"
    static let daemonNames = ["m1", "m2", "m3"]

    @TaskLocal static var current: FleetStack?

    let settings: StackSettings
    let directory: URL
    /// Output of certs-example/make-certs.sh: the CA, client-mx1.* and the first server certificate.
    let certificates: URL
    /// The server certificate, key, client CA and session ticket keys that every daemon reads; the rotation
    /// scenario replaces the certificate and key.
    let live: URL
    let postgres: FleetPostgres
    let database: TestDatabase
    let redis: RedisTestServer
    let keycloak: KeycloakDevProcess
    let daemons: [FleetDaemon]
    let haproxy: FleetHAProxy
    /// stunnel's plain endpoint on 127.0.0.1, which Postfix uses for policy and every map.
    let stunnelPort: UInt16
    let dovecot: DovecotInstance
    let postfix: PostfixInstance
    let teardown: Teardown

    static var currentBinding: TaskLocal<FleetStack?> { $current }

    var ctl: MailcloakCtl {
        MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url)
    }

    static func start() throws -> FleetStack {
        let settings = try settingsFromEnvironment()
        let directory = settings.workDirectory.appendingPathComponent("fleet-\(UUID().uuidString.prefix(8).lowercased())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // The postfix, dovecot, nobody and mailcloak-test users must reach files under it.
        chmod(directory.path, 0o755)
        let teardown = Teardown()
        do {
            return try start(settings: settings, directory: directory, teardown: teardown)
        } catch {
            let problems = teardown.run()
            guard problems.isEmpty else {
                throw StackSetupError.teardownFailed(["start failed: \(error)"] + problems)
            }
            throw error
        }
    }

    /// Reads the variables of scripts/test.sh. Unlike `StackSettings.fromEnvironment()`,
    /// it does not need MAILCLOAK_TEST_DATABASE_URL, because the suite runs its own cluster.
    private static func settingsFromEnvironment() throws -> StackSettings {
        guard TestEnvironment.canRunPostfix else { throw StackSetupError.notRoot }
        let environment = ProcessInfo.processInfo.environment
        let runner = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let settings = StackSettings(
            adminDatabaseURL: "",
            workDirectory: environment["MAILCLOAK_TEST_WORKDIR"].map { URL(fileURLWithPath: $0) }
                ?? FileManager.default.temporaryDirectory,
            sourceRoot: environment["MAILCLOAK_SOURCE_ROOT"].map { URL(fileURLWithPath: $0) }
                ?? TestEnvironment.repositoryRoot,
            binaryDirectory: URL(fileURLWithPath: runner).deletingLastPathComponent()
        )
        for path in [settings.mailcloakPath, settings.mailcloakctlPath]
        where !FileManager.default.isExecutableFile(atPath: path) {
            throw StackSetupError.binaryNotFound(path: path)
        }
        return settings
    }

    private static func start(settings: StackSettings, directory: URL, teardown: Teardown) throws -> FleetStack {
        try writeXOAUTH2Script(into: directory)
        let (certificates, live) = try makeCertificates(settings: settings, directory: directory)

        let postgres = FleetPostgres(
            folder: directory.appendingPathComponent("pg"), port: try TestEnvironment.freePorts(count: 1))
        teardown.add("stop PostgreSQL") { try postgres.stop() }
        let adminURL = try postgres.start()
        let database = try TestDatabase.create(adminURL: adminURL)
        try seed(database, settings: settings)

        let redis = try RedisTestServer()
        teardown.add("stop redis-server") { redis.stop() }

        let keycloak = try KeycloakDevProcess.start(sourceRoot: settings.sourceRoot, directory: directory)
        teardown.add("stop keycloak_dev.py") { try keycloak.stop() }

        let daemons = try makeDaemons(
            settings: settings, directory: directory, live: live, databaseURL: database.url,
            keycloakBaseURL: keycloak.baseURL, redisPort: UInt16(redis.port))
        for daemon in daemons {
            teardown.add("stop mailcloak \(daemon.name)") { try daemon.stop() }
            try daemon.launch()
        }
        for daemon in daemons {
            try daemon.waitUntilReady()
        }

        let haproxy = try FleetHAProxy.start(directory: directory, daemons: daemons)
        teardown.add("stop haproxy") { try haproxy.stop() }
        guard try haproxy.waitForState("UP", servers: daemonNames) else {
            throw StackSetupError.notReady(service: "haproxy servers", seconds: FleetHAProxy.stateTimeout, log: haproxy.errors())
        }

        let stunnelPort = try startStunnel(
            settings: settings, directory: directory, certificates: certificates, haproxyPort: haproxy.frontendPort,
            teardown: teardown)

        let dovecot = try EndToEndStack.startDovecot(
            directory: directory, settings: settings, databaseURL: database.url, keycloak: keycloak)
        teardown.add("stop Dovecot") { try dovecot.stop() }

        let postfix = try PostfixInstance.start(
            directory: directory.appendingPathComponent("postfix"), smtpPort: try TestEnvironment.freePorts(count: 2),
            mailcloakEndpoint: "127.0.0.1:\(stunnelPort)", saslPath: dovecot.saslPath)
        teardown.add("stop Postfix") { try postfix.stop() }

        return FleetStack(
            settings: settings, directory: directory, certificates: certificates, live: live, postgres: postgres,
            database: database, redis: redis, keycloak: keycloak, daemons: daemons, haproxy: haproxy,
            stunnelPort: stunnelPort, dovecot: dovecot, postfix: postfix, teardown: teardown)
    }

    /// Runs make-certs.sh for cluster name mailcloak.test and node mx1, and copies
    /// the files the daemons serve into `live`.
    private static func makeCertificates(settings: StackSettings, directory: URL) throws -> (URL, URL) {
        let certificates = directory.appendingPathComponent("certs")
        try TestEnvironment.runChecked("/bin/sh", [
            settings.sourceRoot.appendingPathComponent("certs-example/make-certs.sh").path, certificates.path,
            "mailcloak.test", "mx1",
        ])
        let live = directory.appendingPathComponent("live")
        try FileManager.default.createDirectory(at: live, withIntermediateDirectories: true)
        for name in ["server.crt", "server.key", "ca.crt"] {
            try FileManager.default.copyItem(
                at: certificates.appendingPathComponent(name), to: live.appendingPathComponent(name))
        }
        // One session ticket key for all three daemons, as deploy/haproxy/README.md advises.
        var generator = SystemRandomNumberGenerator()
        let key = (0..<80).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        try (key + "\n").write(to: live.appendingPathComponent("ticket-keys"), atomically: true, encoding: .utf8)
        return (certificates, live)
    }

    /// Migrates and seeds the database, with the app that Dovecot checks through the checkpassword wrapper.
    private static func seed(_ database: TestDatabase, settings: StackSettings) throws {
        let ctl = MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url)
        try ctl.runChecked(["migrate"])
        try ctl.runChecked(["domains", "add", "example.com"])
        try ctl.runChecked(["aliases", "add", "sales@example.com", "alice"])
        _ = try EndToEndStack.addApp(
            appID, secret: appSecret, sender: appSender, database: database, mailcloakctlPath: settings.mailcloakctlPath)
    }

    /// Writes each daemon's folder and configuration; ports are picked here and kept across restarts.
    private static func makeDaemons(
        settings: StackSettings, directory: URL, live: URL, databaseURL: String, keycloakBaseURL: String,
        redisPort: UInt16
    ) throws -> [FleetDaemon] {
        try daemonNames.map { name in
            let folder = directory.appendingPathComponent("mailcloak-\(name)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let tlsPort = try TestEnvironment.freePorts(count: 1)
            let metricsPort = try TestEnvironment.freePorts(count: 1)
            let configFile = folder.appendingPathComponent("mailcloak.yaml")
            try FleetDaemon.configuration(
                name: name, tlsPort: tlsPort, metricsPort: metricsPort, live: live, databaseURL: databaseURL,
                keycloakBaseURL: keycloakBaseURL, redisPort: redisPort
            ).write(to: configFile, atomically: true, encoding: .utf8)
            return FleetDaemon(
                name: name, tlsPort: tlsPort, metricsPort: metricsPort, folder: folder, configFile: configFile,
                executable: settings.mailcloakPath)
        }
    }

    /// Starts stunnel with node mx1's certificate, connecting to HAProxy, and returns its plain port.
    private static func startStunnel(
        settings: StackSettings, directory: URL, certificates: URL, haproxyPort: UInt16, teardown: Teardown
    ) throws -> UInt16 {
        let port = try TestEnvironment.freePorts(count: 1)
        let configFile = directory.appendingPathComponent("stunnel.conf")
        try TLSStack.stunnelConfiguration(
            sourceRoot: settings.sourceRoot, directory: directory, certificates: certificates, tlsPort: haproxyPort,
            nodes: [("mx1", port)]
        ).write(to: configFile, atomically: true, encoding: .utf8)
        let pid = try TestEnvironment.launch(
            "/usr/bin/stunnel4", [configFile.path],
            outputPath: directory.appendingPathComponent("stunnel.out").path,
            errorPath: directory.appendingPathComponent("stunnel.err").path)
        teardown.add("stop stunnel") {
            guard TestEnvironment.terminate(pid) != nil else {
                throw StackSetupError.stopFailed(service: "stunnel", detail: "pid \(pid) survived SIGKILL")
            }
        }
        let listening = try waitUntil(timeout: 10) {
            if let status = TestEnvironment.exitStatus(of: pid) {
                throw StackSetupError.exited(
                    service: "stunnel", status: status,
                    log: TestEnvironment.readText(directory.appendingPathComponent("stunnel.log")))
            }
            guard let socket = PlainSocket(port: port) else { return false }
            socket.close()
            return true
        }
        guard listening else {
            throw StackSetupError.notReady(
                service: "stunnel", seconds: 10, log: TestEnvironment.readText(directory.appendingPathComponent("stunnel.log")))
        }
        return port
    }
}

extension Trait where Self == StackTrait<FleetStack> {
    /// Runs the suite against newly started PostgreSQL, Redis, keycloak_dev.py,
    /// three mailcloak daemons, HAProxy, stunnel, Dovecot and Postfix.
    static var fleetStack: Self { Self() }
}
