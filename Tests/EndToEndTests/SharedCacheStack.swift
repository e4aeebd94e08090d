// The services of the shared-cache suite: a fresh database, keycloak_dev.py
// serving a realm of 20 users, one private redis-server, and three
// `mailcloak serve` daemons that share all three but listen on separate
// loopback ports. It needs neither Postfix nor root. Everything is started through
// TestEnvironment's posix_spawn helpers and stopped by process id in reverse
// order after the suite, also when a start or a test fails.

import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The running services of one shared-cache suite run.
struct SharedCacheStack: SuiteStack {
    /// Users in the realm: user01..user20, with addresses user01@example.com..user20@example.com.
    static let userCount = 20
    static let daemonCount = 3
    /// Maximum wait for a daemon's snapshot, listener and provider check, in seconds.
    static let startTimeout = 15.0

    @TaskLocal static var current: SharedCacheStack?

    let directory: URL
    let database: TestDatabase
    let keycloak: KeycloakDevProcess
    let redisPort: UInt16
    let daemons: [MailcloakDaemon]
    let teardown: Teardown

    static var currentBinding: TaskLocal<SharedCacheStack?> { $current }

    /// `user01`..`user20`.
    static func username(_ number: Int) -> String {
        "user" + (number < 10 ? "0\(number)" : "\(number)")
    }

    /// Starts every service in order. When one fails, the ones already
    /// running are stopped before the error is thrown.
    static func start() throws -> SharedCacheStack {
        let settings = try settingsFromEnvironment()
        let directory = settings.workDirectory.appendingPathComponent(
            "shared-cache-\(UUID().uuidString.prefix(8).lowercased())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
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

    private static func start(settings: StackSettings, directory: URL, teardown: Teardown) throws -> SharedCacheStack {
        let database = try TestDatabase.create(adminURL: settings.adminDatabaseURL)
        teardown.add("drop database \(database.name)") { try database.drop() }
        let ctl = MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url)
        try ctl.runChecked(["migrate"])
        try ctl.runChecked(["domains", "add", "example.com"])

        let realmFile = directory.appendingPathComponent("realm.json")
        try realmJSON().write(to: realmFile, options: .atomic)
        let keycloak = try startKeycloak(sourceRoot: settings.sourceRoot, realmFile: realmFile, directory: directory)
        teardown.add("stop keycloak_dev.py") { try keycloak.stop() }

        let redis = try RedisTestServer()
        // The teardown step keeps a reference to the server, so it runs until that step stops it.
        teardown.add("stop redis-server") { redis.stop() }

        // All three start before any is waited for, so their start-ups overlap.
        var daemons: [MailcloakDaemon] = []
        for index in 1...daemonCount {
            let daemon = try launchDaemon(
                index: index, settings: settings, directory: directory, databaseURL: database.url,
                keycloakBaseURL: keycloak.baseURL, redisPort: UInt16(redis.port))
            teardown.add("stop mailcloak \(index)") { try daemon.stop() }
            daemons.append(daemon)
        }
        for daemon in daemons {
            try waitUntilReady(daemon)
        }

        return SharedCacheStack(
            directory: directory, database: database, keycloak: keycloak, redisPort: UInt16(redis.port),
            daemons: daemons, teardown: teardown)
    }

    /// Reads the variables of scripts/test.sh. Unlike `StackSettings.fromEnvironment()`,
    /// it does not require root, because this suite starts no Postfix.
    private static func settingsFromEnvironment() throws -> StackSettings {
        let environment = ProcessInfo.processInfo.environment
        guard let databaseURL = environment["MAILCLOAK_TEST_DATABASE_URL"], !databaseURL.isEmpty else {
            throw StackSetupError.missingEnvironment(
                "MAILCLOAK_TEST_DATABASE_URL is not set: run the end-to-end tests through scripts/test.sh,"
                    + " which starts a PostgreSQL cluster and sets it")
        }
        let runner = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let settings = StackSettings(
            adminDatabaseURL: databaseURL,
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

    // MARK: - keycloak_dev.py

    /// Realm `mail` in the shape of dev/keycloak-dev/demo-realm.json: client
    /// `mailcloak` whose service account has `view-users`, and 20 enabled users
    /// with verified addresses.
    static func realmJSON() throws -> Data {
        var users: [[String: Any]] = [
            [
                "username": "service-account-mailcloak", "enabled": true, "serviceAccountClientId": "mailcloak",
                "clientRoles": ["realm-management": ["view-users"]],
            ]
        ]
        for number in 1...userCount {
            let name = username(number)
            users.append([
                "username": name, "email": "\(name)@example.com", "firstName": "User", "lastName": name,
                "enabled": true, "emailVerified": true,
            ])
        }
        let realm: [String: Any] = [
            "realm": KeycloakDevProcess.realm, "enabled": true, "accessTokenLifespan": 300,
            "clients": [
                [
                    "clientId": "mailcloak", "secret": "demo-secret", "publicClient": false,
                    "serviceAccountsEnabled": true, "directAccessGrantsEnabled": false,
                ]
            ],
            "users": users,
        ]
        return try JSONSerialization.data(withJSONObject: realm, options: [.prettyPrinted, .sortedKeys])
    }

    /// Starts keycloak_dev.py with `realmFile` and waits for its `listening 127.0.0.1:PORT` line.
    private static func startKeycloak(sourceRoot: URL, realmFile: URL, directory: URL) throws -> KeycloakDevProcess {
        let script = sourceRoot.appendingPathComponent("dev/keycloak-dev/keycloak_dev.py")
        let outputFile = directory.appendingPathComponent("keycloak-dev.out")
        let errorFile = directory.appendingPathComponent("keycloak-dev.log")
        let pid = try TestEnvironment.launch(
            "/usr/bin/python3", [script.path, "--port", "0", "--data", realmFile.path],
            outputPath: outputFile.path, errorPath: errorFile.path)

        let timeout = KeycloakDevProcess.startTimeout
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let output = TestEnvironment.readText(outputFile)
            if let line = output.split(separator: "\n").first, output.contains("\n"),
                line.hasPrefix("listening 127.0.0.1:")
            {
                let baseURL = "http://" + line.dropFirst("listening ".count)
                return KeycloakDevProcess(pid: pid, baseURL: baseURL, outputFile: outputFile, errorFile: errorFile)
            }
            if let status = TestEnvironment.exitStatus(of: pid) {
                throw StackSetupError.exited(
                    service: "keycloak_dev.py", status: status, log: output + TestEnvironment.readText(errorFile))
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        TestEnvironment.terminate(pid)
        throw StackSetupError.notReady(
            service: "keycloak_dev.py", seconds: timeout,
            log: TestEnvironment.readText(outputFile) + TestEnvironment.readText(errorFile))
    }

    // MARK: - mailcloak

    /// Writes daemon `index`'s configuration into its own folder and starts it, without waiting.
    private static func launchDaemon(
        index: Int, settings: StackSettings, directory: URL, databaseURL: String, keycloakBaseURL: String,
        redisPort: UInt16
    ) throws -> MailcloakDaemon {
        let folder = directory.appendingPathComponent("mailcloak-\(index)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let port = try TestEnvironment.freePorts(count: 1)
        let configFile = folder.appendingPathComponent("mailcloak.yaml")
        let logFile = folder.appendingPathComponent("mailcloak.log")
        try configuration(
            name: "shared\(index)", port: port, databaseURL: databaseURL, keycloakBaseURL: keycloakBaseURL,
            redisPort: redisPort
        ).write(to: configFile, atomically: true, encoding: .utf8)

        let pid = try TestEnvironment.launch(
            settings.mailcloakPath, ["serve", "--config", configFile.path],
            outputPath: folder.appendingPathComponent("mailcloak.out").path, errorPath: logFile.path)
        return MailcloakDaemon(pid: pid, port: port, configFile: configFile, logFile: logFile)
    }

    /// Returns one daemon's YAML configuration (docs/configuration.md describes each key).
    /// Every daemon uses the same database, Keycloak realm, Redis server and key prefix.
    static func configuration(
        name: String, port: UInt16, databaseURL: String, keycloakBaseURL: String, redisPort: UInt16
    ) -> String {
        """
        listeners:
          - name: \(name)
            address: "tcp:127.0.0.1:\(port)"
            services: [policy, socketmap]
        server:
          reactor_threads: 1
          worker_threads: 4
          allow_root: true
        database:
          url: "\(databaseURL)"
        \(TestDaemon.keycloakIdentitySection(keycloakBaseURL: keycloakBaseURL))  redis:
            host: 127.0.0.1
            port: \(redisPort)
        log:
          level: info
          format: keyvalue

        """
    }

    /// Waits until the daemon has loaded its first snapshot, finished its
    /// start-up provider check (which takes a token and sends one user query)
    /// and accepts connections.
    private static func waitUntilReady(_ daemon: MailcloakDaemon) throws {
        let deadline = Date().addingTimeInterval(startTimeout)
        while Date() < deadline {
            if let status = TestEnvironment.exitStatus(of: daemon.pid) {
                throw StackSetupError.exited(service: "mailcloak on port \(daemon.port)", status: status, log: daemon.log())
            }
            let log = daemon.log()
            if log.contains("event=\"identity provider check failed\"") {
                throw StackSetupError.unexpectedOutput(command: "mailcloak serve on port \(daemon.port)", output: log)
            }
            if log.contains("event=\"snapshot loaded\""), log.contains("event=\"identity provider ready\""),
                let probe = PlainSocket(port: daemon.port)
            {
                probe.close()
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw StackSetupError.notReady(
            service: "mailcloak on port \(daemon.port)", seconds: startTimeout, log: daemon.log())
    }
}

// MARK: - keycloak_dev.py counters

/// The counters of keycloak_dev.py's `GET /_dev/stats` that the suite checks.
struct KeycloakDevStats: Sendable, Equatable {
    /// `requests.users`: user list queries (`GET /admin/realms/{realm}/users`), by email or username.
    let userQueries: Int
    /// `tokens_issued`: access tokens from the token endpoint.
    let tokensIssued: Int
}

extension KeycloakDevProcess {
    /// Reads the request counters since the start or the last `resetStats()`.
    func stats() throws -> KeycloakDevStats {
        let result = try devCurl(["\(baseURL)/_dev/stats"])
        let json = try? JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8))
        guard let object = json as? [String: Any], let requests = object["requests"] as? [String: Any],
            let tokensIssued = object["tokens_issued"] as? Int
        else {
            throw StackSetupError.unexpectedOutput(command: "GET /_dev/stats", output: result.standardOutput)
        }
        // An endpoint that no request reached since the reset has no entry.
        return KeycloakDevStats(userQueries: requests["users"] as? Int ?? 0, tokensIssued: tokensIssued)
    }

    /// Clears the counters (`POST /_dev/reset`). Issued tokens stay valid.
    func resetStats() throws {
        try devCurl([
            "--header", "Content-Type: application/json", "--data-binary", "{}", "\(baseURL)/_dev/reset",
        ])
    }

    @discardableResult
    private func devCurl(_ arguments: [String]) throws -> CommandResult {
        try TestEnvironment.runChecked(
            "/usr/bin/curl", ["--silent", "--show-error", "--fail-with-body", "--max-time", "10"] + arguments)
    }
}

extension Trait where Self == StackTrait<SharedCacheStack> {
    /// Runs the suite against a new database, keycloak_dev.py, redis-server and three mailcloak daemons.
    static var sharedCacheStack: Self { Self() }
}
