// The services one end-to-end suite run shares: a fresh database on the
// PostgreSQL cluster of scripts/test.sh, the Keycloak development directory,
// a running mailcloak, a private Dovecot (SASL) and a private Postfix that
// queries mailcloak. They start once, before the first test of the `EndToEnd`
// suite, and stop by process id in reverse order after the last one, also when
// a test or the start fails. Must run as root, because Postfix and Dovecot do.
// NOTE: A test run that is killed (SIGKILL, or Ctrl-C) runs no teardown, so the
// services keep running until stopped by hand (Postfix and Dovecot with
// scripts/testenv/*.sh stop DIR, under the run's e2e-* folder).

import Foundation
import Locking
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A failure to start or stop the shared services, as opposed to a failed expectation.
enum StackSetupError: Error, CustomStringConvertible {
    case missingEnvironment(String)
    case notRoot
    case binaryNotFound(path: String)
    case invalidDatabaseURL(String)
    case notReady(service: String, seconds: Double, log: String)
    case exited(service: String, status: Int32, log: String)
    case unexpectedOutput(command: String, output: String)
    case stopFailed(service: String, detail: String)
    case teardownFailed([String])
    case noStack

    var description: String {
        switch self {
        case .missingEnvironment(let message):
            return message
        case .notRoot:
            return "the end-to-end tests must run as root with Debian's postfix, dovecot-core and swaks installed,"
                + " because the private Postfix and Dovecot masters start as root; run scripts/test.sh"
        case .binaryNotFound(let path):
            return "\(path) not found: build with `swift build --build-tests`, which puts mailcloak and"
                + " mailcloakctl next to the test bundle"
        case .invalidDatabaseURL(let url):
            return "MAILCLOAK_TEST_DATABASE_URL is not a postgresql:// URL: \(url)"
        case .notReady(let service, let seconds, let log):
            return "\(service) did not become ready within \(seconds) s. Its log:\n\(log)"
        case .exited(let service, let status, let log):
            return "\(service) exited with status \(status) during start. Its log:\n\(log)"
        case .unexpectedOutput(let command, let output):
            return "\(command) printed something unexpected:\n\(output)"
        case .stopFailed(let service, let detail):
            return "\(service) did not stop cleanly: \(detail)"
        case .teardownFailed(let problems):
            return "stopping the end-to-end services failed:\n" + problems.joined(separator: "\n")
        case .noStack:
            return "no end-to-end services are running: the test must be inside the EndToEnd suite"
        }
    }
}

/// Paths and URLs the suite takes from scripts/test.sh.
struct StackSettings: Sendable {
    /// Superuser URL of the cluster's `postgres` database (MAILCLOAK_TEST_DATABASE_URL).
    let adminDatabaseURL: String
    /// Folder for this run's files (MAILCLOAK_TEST_WORKDIR, else the temporary directory).
    let workDirectory: URL
    /// The repository root (MAILCLOAK_SOURCE_ROOT, else found from this file's path).
    let sourceRoot: URL
    /// The build folder that contains the test bundle, mailcloak and mailcloakctl.
    let binaryDirectory: URL

    var mailcloakPath: String { binaryDirectory.appendingPathComponent("mailcloak").path }
    var mailcloakctlPath: String { binaryDirectory.appendingPathComponent("mailcloakctl").path }

    /// Reads the settings and checks that the daemon binaries and root rights are there.
    /// - Throws: `StackSetupError` naming what is missing and how to get it.
    static func fromEnvironment() throws -> StackSettings {
        let environment = ProcessInfo.processInfo.environment
        guard let databaseURL = environment["MAILCLOAK_TEST_DATABASE_URL"], !databaseURL.isEmpty else {
            throw StackSetupError.missingEnvironment(
                "MAILCLOAK_TEST_DATABASE_URL is not set: run the end-to-end tests through scripts/test.sh,"
                    + " which starts a PostgreSQL cluster and sets it")
        }
        guard TestEnvironment.canRunPostfix else { throw StackSetupError.notRoot }

        let workDirectory =
            environment["MAILCLOAK_TEST_WORKDIR"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory
        let sourceRoot =
            environment["MAILCLOAK_SOURCE_ROOT"].map { URL(fileURLWithPath: $0) }
            ?? TestEnvironment.repositoryRoot
        // The test runner is the bundle itself (…/debug/mailcloakPackageTests.xctest) on Linux.
        let runner = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let settings = StackSettings(
            adminDatabaseURL: databaseURL,
            workDirectory: workDirectory,
            sourceRoot: sourceRoot,
            binaryDirectory: URL(fileURLWithPath: runner).deletingLastPathComponent()
        )
        for path in [settings.mailcloakPath, settings.mailcloakctlPath]
        where !FileManager.default.isExecutableFile(atPath: path) {
            throw StackSetupError.binaryNotFound(path: path)
        }
        return settings
    }
}

/// Cleanup steps registered while the services start, run newest first.
final class Teardown: Sendable {
    typealias Step = (name: String, action: @Sendable () throws -> Void)

    private let steps = Locked<[Step]>([])

    func add(_ name: String, _ action: @escaping @Sendable () throws -> Void) {
        steps.withLock { $0.append((name, action)) }
    }

    /// Runs every step once, newest first, and returns the failures as text.
    /// A failed step does not stop the ones after it.
    func run() -> [String] {
        let pending = steps.withLock { steps in
            defer { steps.removeAll() }
            return steps
        }
        var problems: [String] = []
        for step in pending.reversed() {
            do {
                try step.action()
            } catch {
                problems.append("\(step.name): \(error)")
            }
        }
        return problems
    }

    /// Runs `operation` with `stack` bound to `current`, then runs every step. Rethrows the
    /// operation's error first, and otherwise throws `StackSetupError.teardownFailed` when a step failed.
    func runScope<Stack: Sendable>(
        of stack: Stack, boundTo current: TaskLocal<Stack?>, performing operation: @Sendable () async throws -> Void
    ) async throws {
        var failure: (any Error)?
        do {
            try await current.withValue(stack) {
                try await operation()
            }
        } catch {
            failure = error
        }
        let problems = run()
        if let failure {
            throw failure
        }
        if !problems.isEmpty {
            throw StackSetupError.teardownFailed(problems)
        }
    }
}

/// Services that a suite starts before its first test and stops after its last.
protocol SuiteStack: Sendable {
    /// Starts every service; the stack's `teardown` stops them.
    static func start() throws -> Self
    /// The stack of the suite run that encloses the current test.
    static var current: Self? { get }
    /// The task-local value behind `current`, which `StackTrait` binds.
    static var currentBinding: TaskLocal<Self?> { get }
    var teardown: Teardown { get }
}

extension SuiteStack {
    /// Returns the stack of the enclosing suite run.
    /// - Throws: `StackSetupError.noStack` outside a suite with this stack's trait.
    static func require() throws -> Self {
        guard let stack = current else { throw StackSetupError.noStack }
        return stack
    }
}

/// Starts `Stack` before a suite's first test and stops it after its last,
/// making it available as `Stack.current` meanwhile.
struct StackTrait<Stack: SuiteStack>: SuiteTrait, TestScoping {
    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let stack = try Stack.start()
        try await stack.teardown.runScope(of: stack, boundTo: Stack.currentBinding, performing: function)
    }
}

/// The running services of one suite run, and what the tests need to reach them.
struct EndToEndStack: SuiteStack {
    /// The app seeded with `mailcloakctl apps add`, its secret and its one allowed sender.
    static let appID = "crm"
    static let appSecret = "crm-end-to-end-secret"
    static let appSender = "noreply@example.com"

    /// The stack of the suite run that encloses the current test.
    @TaskLocal static var current: EndToEndStack?

    let settings: StackSettings
    /// This run's folder: configuration, logs, and the Postfix and Dovecot instances.
    let directory: URL
    let database: TestDatabase
    let keycloak: KeycloakDevProcess
    let mailcloak: MailcloakDaemon
    let dovecot: DovecotInstance
    let postfix: PostfixInstance
    let teardown: Teardown

    static var currentBinding: TaskLocal<EndToEndStack?> { $current }

    /// Starts every service in order. When one fails, the ones already
    /// running are stopped before the error is thrown.
    static func start() throws -> EndToEndStack {
        let settings = try StackSettings.fromEnvironment()
        let directory = settings.workDirectory.appendingPathComponent("e2e-\(UUID().uuidString.prefix(8).lowercased())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // The postfix, dovecot and nobody users must reach files under it.
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

    private static func start(settings: StackSettings, directory: URL, teardown: Teardown) throws -> EndToEndStack {
        let database = try TestDatabase.create(adminURL: settings.adminDatabaseURL)
        teardown.add("drop database \(database.name)") { try database.drop() }
        try seed(database, settings: settings)

        let keycloak = try KeycloakDevProcess.start(sourceRoot: settings.sourceRoot, directory: directory)
        teardown.add("stop keycloak_dev.py") { try keycloak.stop() }

        let mailcloak = try MailcloakDaemon.start(
            settings: settings, directory: directory, databaseURL: database.url, keycloakBaseURL: keycloak.baseURL)
        teardown.add("stop mailcloak") { try mailcloak.stop() }

        let dovecot = try startDovecot(
            directory: directory, settings: settings, databaseURL: database.url, keycloak: keycloak)
        teardown.add("stop Dovecot") { try dovecot.stop() }

        let postfix = try PostfixInstance.start(
            directory: directory.appendingPathComponent("postfix"),
            smtpPort: try TestEnvironment.freePorts(count: 2),
            mailcloakEndpoint: mailcloak.endpoint,
            saslPath: dovecot.saslPath
        )
        teardown.add("stop Postfix") { try postfix.stop() }

        return EndToEndStack(
            settings: settings, directory: directory, database: database, keycloak: keycloak,
            mailcloak: mailcloak, dovecot: dovecot, postfix: postfix, teardown: teardown)
    }

    /// Migrates and seeds the database, with the app that Dovecot checks through the checkpassword wrapper.
    private static func seed(_ database: TestDatabase, settings: StackSettings) throws {
        let ctl = MailcloakCtl(path: settings.mailcloakctlPath, databaseURL: database.url)
        try ctl.runChecked(["migrate"])
        try ctl.runChecked(["domains", "add", "example.com"])
        try ctl.runChecked(["domains", "add", "disabled.test"])
        try ctl.runChecked(["domains", "disable", "disabled.test"])
        try ctl.runChecked(["aliases", "add", "sales@example.com", "alice"])
        try ctl.runChecked(["aliases", "add", "support@example.com", "bob"])
        _ = try addApp(
            appID, secret: appSecret, sender: appSender, database: database, mailcloakctlPath: settings.mailcloakctlPath)
    }

    /// Adds app `id` with `secret` through `mailcloakctl apps add`, allows it to send as `sender`,
    /// and returns the argon2id hash stored for it.
    static func addApp(
        _ id: String, secret: String, sender: String, database: TestDatabase, mailcloakctlPath: String
    ) throws -> String {
        let ctl = MailcloakCtl(path: mailcloakctlPath, databaseURL: database.url)
        // mailcloakctl reads the secret from standard input, which run() connects to /dev/null.
        try TestEnvironment.runChecked(
            "/bin/sh",
            [
                "-c", "printf '%s\\n' \"$1\" | \"$2\" --database-url \"$3\" apps add \"$4\" --secret-stdin",
                "sh", secret, mailcloakctlPath, database.url, id,
            ])
        try ctl.runChecked(["apps", "allow", id, sender])

        let hash = try database.query("SELECT secret_hash FROM apps WHERE id = '\(id)'")
        guard hash.hasPrefix("$argon2id$") else {
            throw StackSetupError.unexpectedOutput(command: "SELECT secret_hash FROM apps", output: hash)
        }
        return hash
    }

    /// Starts Dovecot with PLAIN and LOGIN checked by the shipped
    /// deploy/dovecot/mailcloak-checkpassword wrapper, which runs
    /// `mailcloakctl checkpassword` against the apps table of `databaseURL`
    /// with its outage cache, and XOAUTH2 checked at keycloak_dev.py's
    /// introspection endpoint.
    static func startDovecot(
        directory: URL, settings: StackSettings, databaseURL: String, keycloak: KeycloakDevProcess
    ) throws -> DovecotInstance {
        let folder = directory.appendingPathComponent("checkpassword")
        let cache = folder.appendingPathComponent("cache")
        try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
        chmod(folder.path, 0o755)
        // The dovecot user runs the wrapper, so the cache is that user's, as the README's install step makes it.
        guard let dovecotUser = getpwnam("dovecot"), chmod(cache.path, 0o700) == 0,
            chown(cache.path, dovecotUser.pointee.pw_uid, dovecotUser.pointee.pw_gid) == 0
        else {
            throw StackSetupError.unexpectedOutput(command: "chown dovecot \(cache.path)", output: String(cString: strerror(errno)))
        }
        let configuration = folder.appendingPathComponent("mailcloak.yaml")
        try """
            listeners:
              - name: unused
                address: "tcp:127.0.0.1:10027"
            database:
              url: "\(databaseURL)"

            """.write(to: configuration, atomically: true, encoding: .utf8)
        chmod(configuration.path, 0o644)

        let wrapper = folder.appendingPathComponent("mailcloak-checkpassword")
        let shipped = settings.sourceRoot.appendingPathComponent("deploy/dovecot/mailcloak-checkpassword")
        try String(contentsOf: shipped, encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/mailcloakctl", with: settings.mailcloakctlPath)
            .replacingOccurrences(of: "/etc/mailcloak/mailcloak.yaml", with: configuration.path)
            .replacingOccurrences(of: "/var/cache/mailcloak-checkpassword", with: cache.path)
            .write(to: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper.path, 0o755)

        return try DovecotInstance.start(
            directory: directory.appendingPathComponent("dovecot"),
            authPort: try TestEnvironment.freePorts(count: 1),
            checkpassword: wrapper.path,
            introspectionURL: keycloak.introspectionURL
        )
    }
}

extension Trait where Self == StackTrait<EndToEndStack> {
    /// Runs the suite against a new database and newly started keycloak_dev.py,
    /// mailcloak, Dovecot and Postfix.
    static var endToEndStack: Self { Self() }
}

/// Postfix (smtpd, cleanup, postmap) querying a running mailcloak, over real
/// SMTP and socketmap connections. The nested suites share one stack and run
/// one test at a time, because they read shared logs and mailboxes.
@Suite(.serialized, .endToEndStack)
struct EndToEnd {}
