// dev/keycloak-dev/keycloak_dev.py with the demo realm, started on a free
// loopback port (--port 0), and the HTTP calls the tests make to it with curl:
// a user's access token for XOAUTH2, and the /_dev/config failure injection.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A running Keycloak development directory, serving realm `mail` of demo-realm.json.
struct KeycloakDevProcess: Sendable {
    static let realm = "mail"
    /// The demo realm's client with direct access grants, which Dovecot also
    /// uses as its introspection credentials.
    static let dovecotClientID = "dovecot"
    static let dovecotClientSecret = "dovecot-dev-secret"
    /// Maximum wait for the `listening` line, in seconds.
    static let startTimeout = 10.0

    let pid: pid_t
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    let baseURL: String
    let outputFile: URL
    let errorFile: URL

    /// RFC 7662 endpoint for Dovecot's oauth2 passdb, with the client credentials as user info.
    var introspectionURL: String {
        let hostPort = baseURL.dropFirst("http://".count)
        return "http://\(Self.dovecotClientID):\(Self.dovecotClientSecret)@\(hostPort)"
            + "/realms/\(Self.realm)/protocol/openid-connect/token/introspect"
    }

    /// Starts keycloak_dev.py and waits for its `listening 127.0.0.1:PORT` line.
    /// - Throws: `StackSetupError.exited` or `.notReady` with the server's output.
    static func start(sourceRoot: URL, directory: URL) throws -> KeycloakDevProcess {
        let folder = sourceRoot.appendingPathComponent("dev/keycloak-dev")
        let outputFile = directory.appendingPathComponent("keycloak-dev.out")
        let errorFile = directory.appendingPathComponent("keycloak-dev.log")
        let pid = try TestEnvironment.launch(
            "/usr/bin/python3",
            [
                folder.appendingPathComponent("keycloak_dev.py").path,
                "--port", "0",
                "--data", folder.appendingPathComponent("demo-realm.json").path,
            ],
            outputPath: outputFile.path,
            errorPath: errorFile.path
        )

        let deadline = Date().addingTimeInterval(startTimeout)
        while Date() < deadline {
            let output = TestEnvironment.readText(outputFile)
            if let line = output.split(separator: "\n").first, output.contains("\n"),
                line.hasPrefix("listening 127.0.0.1:")
            {
                let hostPort = line.dropFirst("listening ".count)
                return KeycloakDevProcess(
                    pid: pid, baseURL: "http://\(hostPort)", outputFile: outputFile, errorFile: errorFile)
            }
            if let status = TestEnvironment.exitStatus(of: pid) {
                throw StackSetupError.exited(
                    service: "keycloak_dev.py", status: status, log: output + TestEnvironment.readText(errorFile))
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        TestEnvironment.terminate(pid)
        throw StackSetupError.notReady(
            service: "keycloak_dev.py", seconds: startTimeout,
            log: TestEnvironment.readText(outputFile) + TestEnvironment.readText(errorFile))
    }

    /// Gets an access token for a realm user with the password grant.
    func accessToken(username: String, password: String) throws -> String {
        let result = try curl([
            "--data-urlencode", "grant_type=password",
            "--data-urlencode", "client_id=\(Self.dovecotClientID)",
            "--data-urlencode", "client_secret=\(Self.dovecotClientSecret)",
            "--data-urlencode", "username=\(username)",
            "--data-urlencode", "password=\(password)",
            "\(baseURL)/realms/\(Self.realm)/protocol/openid-connect/token",
        ])
        let json = try? JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8))
        guard let object = json as? [String: Any], let token = object["access_token"] as? String else {
            throw StackSetupError.unexpectedOutput(
                command: "token request for \(username)", output: result.standardOutput)
        }
        return token
    }

    /// Changes the failure injection and latency (POST /_dev/config), for
    /// example `{"failure": "500", "failure_scope": "all"}`. `{"failure": null}` ends a failure.
    func configure(_ json: String) throws {
        try curl(["--header", "Content-Type: application/json", "--data-binary", json, "\(baseURL)/_dev/config"])
    }

    /// Stops the server by its process id.
    func stop() throws {
        guard TestEnvironment.terminate(pid) != nil else {
            throw StackSetupError.stopFailed(service: "keycloak_dev.py", detail: "pid \(pid) survived SIGKILL")
        }
    }

    @discardableResult
    private func curl(_ arguments: [String]) throws -> CommandResult {
        try TestEnvironment.runChecked(
            "/usr/bin/curl", ["--silent", "--show-error", "--fail-with-body", "--max-time", "10"] + arguments)
    }
}
