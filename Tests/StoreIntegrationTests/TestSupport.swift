// Shared helpers of the PostgreSQL integration tests: a database of its
// own per test, running mailcloakctl and other programs as subprocesses,
// and polling with a generous deadline.
import Config
import Foundation
import Store
import Testing

/// A setup failure, shown as the test's error.
struct TestSetupError: Error, CustomStringConvertible {
    let description: String
}

/// Returns the superuser URL of the test cluster from MAILCLOAK_TEST_DATABASE_URL.
func superuserURL() throws -> String {
    guard let url = ProcessInfo.processInfo.environment["MAILCLOAK_TEST_DATABASE_URL"], !url.isEmpty else {
        throw TestSetupError(description:
            "MAILCLOAK_TEST_DATABASE_URL is not set: run scripts/test.sh, which starts a throwaway "
            + "PostgreSQL (scripts/testenv/postgres.sh) and sets it to the superuser URL")
    }
    return url
}

/// A database created for one test and dropped when the test ends.
final class TestDatabase: Sendable {
    let name: String
    /// Connection string of the test database, for the store and mailcloakctl.
    let url: String
    private let adminURL: String

    init(migrated: Bool = true) throws {
        adminURL = try superuserURL()
        name = "mailcloak_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        url = try ConnectionInfo(adminURL).replacingDatabase(with: name)
        let admin = try Self.connect(adminURL)
        try admin.execute("CREATE DATABASE \(name)")
        if migrated {
            _ = try Migrations.migrate(try connect())
        }
    }

    deinit {
        guard let admin = try? Self.connect(adminURL) else { return }
        _ = try? admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Opens a new connection to the test database.
    func connect() throws -> PostgresConnection {
        try Self.connect(url)
    }

    /// Runs SQL on a new connection to the test database.
    @discardableResult
    func sql(_ statement: String, _ parameters: [String?] = []) throws -> PostgresRows {
        try connect().execute(statement, parameters)
    }

    /// Runs a query and returns its rows as text, for exact comparisons.
    func rows(_ query: String) throws -> [[String?]] {
        try sql(query).rows
    }

    /// Returns a store configuration for this database with short test delays.
    func storeConfig() -> DatabaseConfig {
        var config = DatabaseConfig()
        config.url = url
        config.maxReconnectDelay = 0.5
        config.connectTimeout = 5
        config.statementTimeout = 10
        return config
    }

    static func connect(_ url: String) throws -> PostgresConnection {
        try PostgresConnection(
            conninfo: url, applicationName: "mailcloak-tests", connectTimeout: 5, statementTimeout: 30)
    }
}

/// The exit status and output of a finished subprocess.
struct ProcessResult: Equatable, CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String

    var description: String { "status \(status)\nstdout:\n\(stdout)\nstderr:\n\(stderr)" }
}

/// Runs `executable` with `arguments`, feeding `input` on stdin, and waits for it.
///
/// Standard input, output and error are files, not pipes: a long-lived child
/// started meanwhile by a parallel test (Dovecot) may inherit a pipe's write
/// end and hold it open, so reading a pipe to its end could block forever.
func runProcess(
    _ executable: String, _ arguments: [String], input: String = "", environment: [String: String] = [:]
) throws -> ProcessResult {
    let folder = try TemporaryFolder()
    let inputPath = folder.path + "/stdin"
    let outputPath = folder.path + "/stdout"
    let errorPath = folder.path + "/stderr"
    try input.write(toFile: inputPath, atomically: false, encoding: .utf8)
    for path in [outputPath, errorPath] {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw TestSetupError(description: "cannot create \(path)")
        }
    }

    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var merged = ProcessInfo.processInfo.environment
    merged["MAILCLOAK_DATABASE_URL"] = nil
    for (key, value) in environment { merged[key] = value }
    process.environment = merged
    let inputHandle = try FileHandle(forReadingFrom: URL(fileURLWithPath: inputPath))
    let outputHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
    let errorHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
    defer {
        try? inputHandle.close()
        try? outputHandle.close()
        try? errorHandle.close()
    }
    process.standardInput = inputHandle
    process.standardOutput = outputHandle
    process.standardError = errorHandle
    try process.run()
    process.waitUntilExit()

    return ProcessResult(
        status: process.terminationStatus,
        stdout: try String(contentsOfFile: outputPath, encoding: .utf8),
        stderr: try String(contentsOfFile: errorPath, encoding: .utf8))
}

/// Path of the mailcloakctl built next to this test bundle.
func mailcloakctlPath() throws -> String {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    let candidates = [
        executable.deletingLastPathComponent().appendingPathComponent("mailcloakctl").path,
        Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("mailcloakctl").path,
    ]
    guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw TestSetupError(description:
            "mailcloakctl not found at \(candidates[0]); build it with swift build --build-tests")
    }
    return path
}

/// Runs mailcloakctl against `database` (through MAILCLOAK_DATABASE_URL).
func ctl(_ database: TestDatabase, _ arguments: [String], input: String = "") throws -> ProcessResult {
    try runProcess(
        try mailcloakctlPath(), arguments, input: input, environment: ["MAILCLOAK_DATABASE_URL": database.url])
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass.
func eventually(timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// A temporary folder, removed when the value is released.
final class TemporaryFolder {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "mailcloak-store-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}
