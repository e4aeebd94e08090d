import Config
import Foundation

@testable import IdentityProvider

// Starts dev/authentik-dev/authentik_dev.py on a free loopback port with
// demo-users.json, drives its /_dev/ hooks, and stops it by process id.

/// Counters from `GET /_dev/stats` of the Authentik development directory.
struct AuthentikDevStats: Decodable {
    var requests: [String: Int]

    var users: Int { requests["users"] ?? 0 }
}

final class AuthentikDevServer {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("dev/authentik-dev")

    let process = Process()
    let baseURL: String
    private let http: HTTPClient

    init() throws {
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", Self.directory.appendingPathComponent("authentik_dev.py").path,
            "--data", Self.directory.appendingPathComponent("demo-users.json").path, "--port", "0",
        ]
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let line: String
        do {
            line = try KeycloakDevServer.readFirstLine(output.fileHandleForReading.fileDescriptor)
        } catch {
            KeycloakDevServer.terminate(process)
            throw error
        }
        guard line.hasPrefix("listening 127.0.0.1:") else {
            KeycloakDevServer.terminate(process)
            throw KeycloakDevServerError.startFailed("unexpected first line \"\(line)\"")
        }
        baseURL = "http://" + line.dropFirst("listening ".count)
        http = try HTTPClient(options: HTTPClientOptions(timeout: 10, connectTimeout: 5))
    }

    deinit {
        try? post("/_dev/reset", "{}")
        KeycloakDevServer.terminate(process)
    }

    /// Returns an identity configuration that selects this server.
    func identityConfig(token: String = "demo-api-token", pageSize: Int = 20) -> IdentityConfig {
        var config = IdentityConfig()
        config.provider = .authentik
        config.authentik.baseURL = baseURL
        config.authentik.token = token
        config.authentik.pageSize = pageSize
        config.authentik.requestTimeout = 5
        config.authentik.connectTimeout = 2
        return config
    }

    func stats() throws -> AuthentikDevStats {
        let response = try http.send(HTTPRequest(method: .get, url: baseURL + "/_dev/stats"))
        return try JSONDecoder().decode(AuthentikDevStats.self, from: Data(response.body))
    }

    func configure(_ json: String) throws {
        try post("/_dev/config", json)
    }

    func changeUsers(_ json: String) throws {
        try post("/_dev/users", json)
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
}
