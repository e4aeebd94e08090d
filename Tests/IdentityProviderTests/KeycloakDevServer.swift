import Config
import Foundation

@testable import IdentityProvider

// Starts dev/keycloak-dev/keycloak_dev.py as a subprocess on a free
// loopback port, drives its /_dev/ hooks, and stops it by process id.
#if canImport(Glibc)
    import Glibc
#endif

enum KeycloakDevServerError: Error, CustomStringConvertible {
    case startFailed(String)
    case hookFailed(path: String, status: Int, body: String)

    var description: String {
        switch self {
        case .startFailed(let reason): "keycloak_dev.py did not start: \(reason)"
        case .hookFailed(let path, let status, let body): "POST \(path) returned HTTP \(status): \(body)"
        }
    }
}

/// Counters from `GET /_dev/stats`.
struct DevStats: Decodable {
    var requests: [String: Int]
    var statuses: [String: [String: Int]]
    var tokensIssued: Int

    enum CodingKeys: String, CodingKey {
        case requests
        case statuses
        case tokensIssued = "tokens_issued"
    }

    func requests(_ endpoint: String) -> Int { requests[endpoint] ?? 0 }

    func status(_ endpoint: String, _ status: String) -> Int { statuses[endpoint]?[status] ?? 0 }
}

/// One running development directory, loaded with demo-realm.json.
final class KeycloakDevServer {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("dev/keycloak-dev")

    let process = Process()
    let baseURL: String
    private let http: HTTPClient

    init() throws {
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", Self.directory.appendingPathComponent("keycloak_dev.py").path,
            "--data", Self.directory.appendingPathComponent("demo-realm.json").path, "--port", "0",
        ]
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let line: String
        do {
            line = try Self.readFirstLine(output.fileHandleForReading.fileDescriptor)
        } catch {
            Self.terminate(process)
            throw error
        }
        guard line.hasPrefix("listening 127.0.0.1:") else {
            Self.terminate(process)
            throw KeycloakDevServerError.startFailed("unexpected first line \"\(line)\"")
        }
        baseURL = "http://" + line.dropFirst("listening ".count)
        http = try HTTPClient(options: HTTPClientOptions(timeout: 10, connectTimeout: 5))
    }

    deinit {
        stop()
    }

    /// Stops the server by its process id and waits for it to exit.
    func stop() {
        Self.terminate(process)
    }

    /// Sends SIGTERM, then SIGKILL if the process has not exited after 5 seconds.
    static func terminate(_ process: Process) {
        guard process.isRunning else { return }
        let pid = process.processIdentifier
        kill(pid, SIGTERM)
        if !waitUntil(seconds: 5, { !process.isRunning }) {
            kill(pid, SIGKILL)
        }
        process.waitUntilExit()
    }

    /// Returns an identity configuration pointing at this server.
    func identityConfig(
        clientID: String = "mailcloak", secret: String = "demo-secret", requestTimeout: Double = 5
    ) -> IdentityConfig {
        var config = IdentityConfig()
        config.keycloak.baseURL = baseURL
        config.keycloak.realm = "mail"
        config.keycloak.clientID = clientID
        config.keycloak.clientSecret = secret
        config.keycloak.requestTimeout = requestTimeout
        config.keycloak.connectTimeout = 2
        return config
    }

    func stats() throws -> DevStats {
        let response = try http.send(HTTPRequest(method: .get, url: baseURL + "/_dev/stats"))
        return try JSONDecoder().decode(DevStats.self, from: Data(response.body))
    }

    /// Sets latency, failure injection or token lifespan (`POST /_dev/config`).
    func configure(_ json: String) throws {
        try post("/_dev/config", json)
    }

    /// Adds or replaces users (`POST /_dev/users`), for example
    /// `{"upsert": [{"username": "x", "email": "x@example.com"}]}`.
    func changeUsers(_ json: String) throws {
        try post("/_dev/users", json)
    }

    func revokeTokens() throws {
        try post("/_dev/revoke-tokens", "{}")
    }

    /// Clears counters and injected failures, and releases hung requests.
    func reset() throws {
        try post("/_dev/reset", "{}")
    }

    /// Sends a raw GET to the server, for checks of server behaviour.
    func get(_ pathAndQuery: String, bearer: String) throws -> HTTPResponse {
        try http.send(
            HTTPRequest(method: .get, url: baseURL + pathAndQuery, headers: ["Authorization: Bearer \(bearer)"]))
    }

    private func post(_ path: String, _ json: String) throws {
        let response = try http.send(
            HTTPRequest(
                method: .post, url: baseURL + path, headers: ["Content-Type: application/json"],
                body: Array(json.utf8)))
        guard response.status == 200 else {
            throw KeycloakDevServerError.hookFailed(
                path: path, status: response.status, body: String(decoding: response.body, as: UTF8.self))
        }
    }

    /// Reads up to the first newline, waiting at most 15 seconds in total.
    static func readFirstLine(_ descriptor: Int32) throws -> String {
        var bytes: [UInt8] = []
        let deadline = monotonicNanoseconds() + 15_000_000_000
        while bytes.last != UInt8(ascii: "\n") {
            let now = monotonicNanoseconds()
            guard now < deadline, bytes.count < 256 else {
                throw KeycloakDevServerError.startFailed("no \"listening\" line within 15 s")
            }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32((deadline - now) / 1_000_000))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            var byte: UInt8 = 0
            let count = read(descriptor, &byte, 1)
            guard count == 1 else { throw KeycloakDevServerError.startFailed("stdout closed before a line") }
            bytes.append(byte)
        }
        return String(decoding: bytes.dropLast(), as: UTF8.self)
    }
}
