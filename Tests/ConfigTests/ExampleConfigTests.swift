// Checks that config/mailcloak.example.yaml and docs/configuration.md agree
// with the loader and with the defaults in Configuration.swift.

import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Config

/// The repository root, three levels above this file (Tests/ConfigTests/ExampleConfigTests.swift).
private let repositoryRoot: String = {
    let parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    return parts.dropLast(3).joined(separator: "/")
}()

private func readText(_ relativePath: String) throws -> String {
    let path = repositoryRoot + "/" + relativePath
    let descriptor = open(path, O_RDONLY)
    try #require(descriptor >= 0, "cannot open \(path)")
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        try #require(count >= 0)
        if count == 0 { break }
        bytes += chunk[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

private let minimalListener = "listeners:\n  - name: local\n    address: \"tcp:127.0.0.1:10027\"\n"

// MARK: - Example file

@Test func exampleFileLoads() throws {
    let configuration = try ConfigLoader.load(path: repositoryRoot + "/config/mailcloak.example.yaml")
    #expect(configuration.listeners == [
        ListenerConfig(name: "local-tcp", address: .tcp(host: "127.0.0.1", port: 10027)),
        ListenerConfig(name: "local-unix", address: .unix(path: "/run/mailcloak/mailcloak.sock")),
    ])
}

@Test func exampleFileShowsDefaults() throws {
    let configuration = try ConfigLoader.load(path: repositoryRoot + "/config/mailcloak.example.yaml")
    #expect(configuration.server == ServerConfig())
    #expect(configuration.policy == PolicyConfig())
    #expect(configuration.database == DatabaseConfig())
    #expect(configuration.identity == IdentityConfig())
    #expect(configuration.log == LogConfig())
    #expect(configuration.metrics == MetricsConfig())
    #expect(configuration.listeners.map(\.unixPermissions) == [UnixSocketPermissions(), UnixSocketPermissions()])
    #expect(configuration.listeners.map(\.services) == [Set(ServiceKind.allCases), Set(ServiceKind.allCases)])
}

@Test(arguments: ConfigLoader.leafKeyPaths)
func exampleFileMentionsKey(_ path: String) throws {
    let text = try readText("config/mailcloak.example.yaml")
    let key = String(path.split(separator: ".").last!)
    let shown = text.split(separator: "\n").contains { line in
        let trimmed = line.drop { $0 == " " || $0 == "-" || $0 == "#" }
        return trimmed.hasPrefix(key + ":")
    }
    #expect(shown)
}

// MARK: - Reference page

/// One `### `path`` entry of the reference page: its `- Type:`, `- Default:` and `- Range:` lines.
private struct DocumentedKey {
    var path: String
    var typeLine = ""
    var defaultLine: String?
    var rangeLine: String?
}

private func documentedKeys() throws -> [DocumentedKey] {
    let lines = try readText("docs/configuration.md").split(separator: "\n", omittingEmptySubsequences: false)
    var keys: [DocumentedKey] = []
    for line in lines {
        if line.hasPrefix("### `") && line.hasSuffix("`") {
            keys.append(DocumentedKey(path: String(line.dropFirst(5).dropLast())))
        } else if !keys.isEmpty, line.hasPrefix("- Type: ") {
            keys[keys.count - 1].typeLine = String(line.dropFirst("- Type: ".count))
        } else if !keys.isEmpty, line.hasPrefix("- Default: ") {
            keys[keys.count - 1].defaultLine = String(line.dropFirst("- Default: ".count))
        } else if !keys.isEmpty, line.hasPrefix("- Range: ") {
            keys[keys.count - 1].rangeLine = String(line.dropFirst("- Range: ".count))
        }
    }
    return keys
}

@Test func referenceDescribesEveryKeyOnce() throws {
    let documented = try documentedKeys().map(\.path)
    #expect(documented.sorted() == ConfigLoader.leafKeyPaths.sorted())
}

/// Builds nested YAML that sets each path (such as `identity.keycloak.realm`) to its value.
private func yaml(settings: [(path: String, value: String)]) -> String {
    var text = ""
    var open: [Substring] = []
    for (path, value) in settings.sorted(by: { $0.path < $1.path }) {
        let parts = path.split(separator: ".")
        let shared = zip(open, parts.dropLast()).prefix { $0 == $1 }.count
        open = Array(open.prefix(shared))
        for part in parts.dropLast().dropFirst(shared) {
            text += String(repeating: "  ", count: open.count) + "\(part):\n"
            open.append(part)
        }
        text += String(repeating: "  ", count: open.count) + "\(parts.last!): \(value)\n"
    }
    return text
}

private func yaml(setting path: String, to value: String) -> String {
    yaml(settings: [(path, value)])
}

/// Parses the documented default, in backticks, or `unset`, as YAML for its key, and expects the code's defaults.
@Test func referenceDefaultsMatchCode() throws {
    for key in try documentedKeys() where !key.path.hasPrefix("listeners[]") {
        let path = key.path
        let defaultLine = key.defaultLine
        let line = try #require(defaultLine, "\(path) has no Default line")
        let value: String
        if line.hasPrefix("unset") {
            value = "null"
        } else {
            let quoted = line.split(separator: "`", omittingEmptySubsequences: false)
            try #require(quoted.count >= 3, "\(path): default not in backticks")
            value = String(quoted[1])
        }
        let parsed = try ConfigLoader.parse(yaml: minimalListener + yaml(setting: path, to: value))
        var expected = Configuration()
        expected.listeners = parsed.listeners
        #expect(parsed == expected, "\(path): documented default \(value)")
    }
}

@Test func referenceListenerDefaultsMatchCode() throws {
    let keys = try documentedKeys()
    let services = keys.first { $0.path == "listeners[].services" }?.defaultLine
    let mode = keys.first { $0.path == "listeners[].mode" }?.defaultLine
    let yaml = """
        listeners:
          - name: a
            address: unix:/s
            services: \(services?.split(separator: "`")[0] ?? "")
            mode: \(mode?.split(separator: "`")[0] ?? "")
        """
    let listener = try ConfigLoader.parse(yaml: yaml).listeners[0]
    #expect(listener.services == Set(ServiceKind.allCases))
    #expect(listener.unixPermissions == UnixSocketPermissions())
}

/// Settings that let a key reach the ends of its own range despite a rule that ties it to another key.
private let companions: [String: [(path: String, value: String)]] = [
    "server.policy_max_line_length": [("server.policy_max_request_size", "16777216")],
    "server.policy_max_request_size": [("server.policy_max_line_length", "256")],
    "server.idle_timeout": [("server.io_timeout", "100ms")],
    "server.io_timeout": [("server.idle_timeout", "24h")],
    "database.resync_interval": [("database.max_snapshot_age", "168h")],
    "database.max_snapshot_age": [("database.resync_interval", "10s")],
    "identity.keycloak.request_timeout": [("identity.keycloak.connect_timeout", "100ms")],
    "identity.keycloak.connect_timeout": [("identity.keycloak.request_timeout", "5m")],
    "identity.redis.lock_ttl": [("identity.redis.lock_wait", "0s")],
    "identity.redis.lock_wait": [("identity.redis.lock_ttl", "10m")],
    "identity.breaker.initial_backoff": [("identity.breaker.max_backoff", "24h")],
    "identity.breaker.max_backoff": [("identity.breaker.initial_backoff", "10ms")],
    "identity.authentik.request_timeout": [("identity.authentik.connect_timeout", "100ms")],
    "identity.authentik.connect_timeout": [("identity.authentik.request_timeout", "5m")],
]

private func accepts(_ path: String, _ value: String) -> Bool {
    let settings = [(path, value)] + companions[path, default: []]
    return (try? ConfigLoader.parse(yaml: minimalListener + yaml(settings: settings))) != nil
}

@Test func yamlBuilderNestsSharedSections() {
    let text = yaml(settings: [("server.io_timeout", "1s"), ("identity.keycloak.realm", "a"), ("server.idle_timeout", "2s")])
    #expect(text == "identity:\n  keycloak:\n    realm: a\nserver:\n  idle_timeout: 2s\n  io_timeout: 1s\n")
}

/// Checks each documented integer or duration range `LOW to HIGH`: both ends load, and values just outside do not.
@Test func referenceRangesMatchLoader() throws {
    let numeric = try documentedKeys().filter { $0.typeLine.hasPrefix("integer") || $0.typeLine == "duration" }
    #expect(numeric.count == 38)
    for key in numeric {
        let range = try #require(key.rangeLine, "\(key.path) has no Range line")
        let bounds = range.split(separator: ",")[0].split(separator: " ")
        try #require(bounds.count == 3 && bounds[1] == "to", "\(key.path): range not LOW to HIGH")
        let low = String(bounds[0])
        let high = String(bounds[2])
        #expect(accepts(key.path, low), "\(key.path) rejects its documented minimum \(low)")
        #expect(accepts(key.path, high), "\(key.path) rejects its documented maximum \(high)")

        if key.typeLine == "duration" {
            let lowSeconds = try #require(parseDuration(low))
            let highSeconds = try #require(parseDuration(high))
            #expect(!accepts(key.path, "\(lowSeconds - 0.001)"), "\(key.path) accepts less than \(low)")
            #expect(!accepts(key.path, "\(highSeconds + 0.001)"), "\(key.path) accepts more than \(high)")
        } else {
            let lowValue = try #require(Int(low))
            let highValue = try #require(Int(high))
            #expect(!accepts(key.path, "\(lowValue - 1)"), "\(key.path) accepts less than \(low)")
            #expect(!accepts(key.path, "\(highValue + 1)"), "\(key.path) accepts more than \(high)")
        }
    }
}
