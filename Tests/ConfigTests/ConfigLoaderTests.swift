import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Config

private let minimalListener = """
    listeners:
      - name: local
        address: "tcp:127.0.0.1:10027"

    """

private func parse(_ text: String) -> Result<Configuration, ConfigError> {
    Result { () throws(ConfigError) in try ConfigLoader.parse(yaml: text) }
}

private func error(_ text: String) -> ConfigError? {
    if case .failure(let error) = parse(text) { return error }
    return nil
}

// MARK: - Whole documents

@Test func loaderReadsMinimalConfiguration() throws {
    let configuration = try ConfigLoader.parse(yaml: minimalListener)
    var expected = Configuration()
    expected.listeners = [ListenerConfig(name: "local", address: .tcp(host: "127.0.0.1", port: 10027))]
    #expect(configuration == expected)
}

@Test func loaderReadsEveryKey() throws {
    let text = """
        listeners:
          - name: edge.v6
            address: "tcp:[::1]:10027"
            services: [policy]
          - name: sock_1
            address: unix:/run/mailcloak/mc.sock
            services: [socketmap, policy]
            owner: mailcloak
            group: "125"
            mode: 0600
        server:
          reactor_threads: 4
          worker_threads: 8
          worker_queue_limit: 100_000
          policy_max_line_length: 2048
          policy_max_attributes: 64
          policy_max_request_size: 32768
          socketmap_max_request_size: 20000
          idle_timeout: 10m
          io_timeout: 250ms
        policy:
          failure_mode: dunno
          recipient_delimiter: "+-"
          allow_authenticated_null_sender: true
          oauth_mechanisms: [XOAUTH2]
          app_mechanisms: [plain, LOGIN, cram-md5]
        database:
          url: "host=db.example.com dbname=mail user=mailcloak"
          resync_interval: 1h
          connect_timeout: 2.5
          statement_timeout: 1.5s
          max_reconnect_delay: 1m
          max_snapshot_age: 2h
        identity:
          provider: keycloak
          keycloak:
            base_url: https://sso.example.com/auth
            realm: staff
            client_id: mailcloak-prod
            client_secret: s3cret
            client_secret_file: /etc/mailcloak/secret
            request_timeout: 3s
            connect_timeout: 1s
            token_refresh_skew: 0
            require_email_verified: True
            ca_file: /etc/ssl/ca.pem
          cache:
            max_entries: 5000
            positive_ttl: 10m
            negative_ttl: 30s
        log:
          level: DEBUG
          format: json
        """
    let configuration = try ConfigLoader.parse(yaml: text)

    #expect(configuration.listeners == [
        ListenerConfig(name: "edge.v6", address: .tcp(host: "::1", port: 10027), services: [.policy]),
        ListenerConfig(
            name: "sock_1", address: .unix(path: "/run/mailcloak/mc.sock"), services: [.policy, .socketmap],
            unixPermissions: UnixSocketPermissions(owner: "mailcloak", group: "125", mode: 0o600)),
    ])

    var server = ServerConfig()
    server.reactorThreads = 4
    server.workerThreads = 8
    server.workerQueueLimit = 100_000
    server.policyMaxLineLength = 2048
    server.policyMaxAttributes = 64
    server.policyMaxRequestSize = 32768
    server.socketmapMaxRequestSize = 20000
    server.idleTimeout = 600
    server.ioTimeout = 0.25
    #expect(configuration.server == server)

    var policy = PolicyConfig()
    policy.failureMode = .dunno
    policy.recipientDelimiter = "+-"
    policy.allowAuthenticatedNullSender = true
    policy.oauthMechanisms = ["xoauth2"]
    policy.appMechanisms = ["plain", "login", "cram-md5"]
    #expect(configuration.policy == policy)

    var database = DatabaseConfig()
    database.url = "host=db.example.com dbname=mail user=mailcloak"
    database.resyncInterval = 3600
    database.connectTimeout = 2.5
    database.statementTimeout = 1.5
    database.maxReconnectDelay = 60
    database.maxSnapshotAge = 7200
    #expect(configuration.database == database)

    var keycloak = KeycloakConfig()
    keycloak.baseURL = "https://sso.example.com/auth"
    keycloak.realm = "staff"
    keycloak.clientID = "mailcloak-prod"
    keycloak.clientSecret = "s3cret"
    keycloak.clientSecretFile = "/etc/mailcloak/secret"
    keycloak.requestTimeout = 3
    keycloak.connectTimeout = 1
    keycloak.tokenRefreshSkew = 0
    keycloak.requireEmailVerified = true
    keycloak.caFile = "/etc/ssl/ca.pem"
    #expect(configuration.identity.keycloak == keycloak)
    #expect(configuration.identity.provider == .keycloak)

    var cache = IdentityCacheConfig()
    cache.maxEntries = 5000
    cache.positiveTTL = 600
    cache.negativeTTL = 30
    #expect(configuration.identity.cache == cache)

    #expect(configuration.log.level == "debug")
    #expect(configuration.log.format == "json")
}

@Test func loaderAcceptsNullOptionalKeys() throws {
    let configuration = try ConfigLoader.parse(yaml: minimalListener + """
        identity:
          keycloak:
            client_secret_file: ~
            ca_file:
        """)
    #expect(configuration.identity.keycloak.clientSecretFile == nil)
    #expect(configuration.identity.keycloak.caFile == nil)
}

@Test func loaderAcceptsEmptySections() throws {
    let configuration = try ConfigLoader.parse(yaml: minimalListener + "server: {}\nlog: {}\n")
    #expect(configuration.server == ServerConfig())
    #expect(configuration.log == LogConfig())
}

@Test func loaderAcceptsEmptyDelimiter() throws {
    let configuration = try ConfigLoader.parse(yaml: minimalListener + "policy:\n  recipient_delimiter: \"\"\n")
    #expect(configuration.policy.recipientDelimiter == "")
}

// MARK: - Structure errors

@Test func loaderRequiresListeners() {
    #expect(error("server:\n  worker_threads: 2\n") == ConfigError(.missingKey, keyPath: "listeners", line: 1))
}

@Test func loaderRejectsEmptyDocument() {
    #expect(error("") == ConfigError(.missingKey, keyPath: "listeners"))
}

@Test func loaderRejectsEmptyListenerList() {
    let expected = ConfigError(
        .invalidValue(found: "a sequence", expected: "a non-empty sequence of listeners"), keyPath: "listeners",
        line: 1)
    #expect(error("listeners: []\n") == expected)
}

@Test func loaderRejectsScalarRoot() {
    let expected = ConfigError(.invalidValue(found: "\"hello\"", expected: "a mapping"), keyPath: "", line: 1)
    #expect(error("hello\n") == expected)
}

struct UnknownKeyCase: CustomTestStringConvertible, Sendable {
    var yaml: String
    var path: String
    var line: Int
    var testDescription: String { path }
}

private let unknownKeyCases: [UnknownKeyCase] = [
    .init(yaml: minimalListener + "servers: {}\n", path: "servers", line: 4),
    .init(yaml: minimalListener + "server:\n  reactor_thread: 2\n", path: "server.reactor_thread", line: 5),
    .init(yaml: minimalListener + "identity:\n  keycloak:\n    baseurl: x\n", path: "identity.keycloak.baseurl", line: 6),
    .init(yaml: minimalListener + "identity:\n  cache:\n    ttl: 1s\n", path: "identity.cache.ttl", line: 6),
    .init(yaml: "listeners:\n  - name: a\n    address: unix:/a\n    perms: 1\n", path: "listeners[0].perms", line: 4),
    .init(yaml: minimalListener + "log:\n  Level: info\n", path: "log.Level", line: 5),
]

@Test(arguments: unknownKeyCases)
func loaderRejectsUnknownKey(_ testCase: UnknownKeyCase) {
    let found = error(testCase.yaml)
    #expect(found?.keyPath == testCase.path)
    #expect(found?.line == testCase.line)
    if case .unknownKey = found?.problem {
    } else {
        Issue.record("expected unknownKey, got \(String(describing: found))")
    }
}

@Test func unknownKeyErrorListsAllowedKeys() {
    let found = error(minimalListener + "log:\n  colour: red\n")
    let allowed = [
        "level", "format", "output", "syslog_socket", "syslog_facility", "syslog_ident", "decision_sample_rate",
    ]
    #expect(found?.problem == .unknownKey(allowed: allowed))
    #expect(found?.description == "line 5: log.colour: unknown key, expected one of: " + allowed.joined(separator: ", "))
}

// MARK: - Values

struct InvalidValueCase: CustomTestStringConvertible, Sendable {
    var yaml: String
    var path: String
    var found: String
    var expected: String
    var testDescription: String { "\(path) = \(found)" }
}

private let durationForm = "such as 250ms, 30s, 5m, 1h or a number of seconds"

private let invalidValueCases: [InvalidValueCase] = [
    .init(
        yaml: "server:\n  reactor_threads: four\n", path: "server.reactor_threads", found: "\"four\"",
        expected: "an integer from 0 to 256"),
    .init(
        yaml: "server:\n  reactor_threads: 257\n", path: "server.reactor_threads", found: "\"257\"",
        expected: "an integer from 0 to 256"),
    .init(
        yaml: "server:\n  worker_threads: 0\n", path: "server.worker_threads", found: "\"0\"",
        expected: "an integer from 1 to 1024"),
    .init(
        yaml: "server:\n  worker_threads: -3\n", path: "server.worker_threads", found: "\"-3\"",
        expected: "an integer from 1 to 1024"),
    .init(
        yaml: "server:\n  worker_threads: 1.5\n", path: "server.worker_threads", found: "\"1.5\"",
        expected: "an integer from 1 to 1024"),
    .init(
        yaml: "server:\n  worker_queue_limit: _100\n", path: "server.worker_queue_limit", found: "\"_100\"",
        expected: "an integer from 1 to 1000000"),
    .init(
        yaml: "server:\n  worker_queue_limit: [1]\n", path: "server.worker_queue_limit", found: "a sequence",
        expected: "an integer from 1 to 1000000"),
    .init(
        yaml: "server:\n  worker_queue_limit:\n", path: "server.worker_queue_limit", found: "null",
        expected: "an integer from 1 to 1000000"),
    .init(
        yaml: "server:\n  policy_max_attributes: 31\n", path: "server.policy_max_attributes", found: "\"31\"",
        expected: "an integer from 32 to 10000"),
    .init(
        yaml: "server:\n  policy_max_line_length: 255\n", path: "server.policy_max_line_length", found: "\"255\"",
        expected: "an integer from 256 to 1048576"),
    .init(
        yaml: "server:\n  socketmap_max_request_size: 99999999999999999999\n",
        path: "server.socketmap_max_request_size", found: "\"99999999999999999999\"",
        expected: "an integer from 1024 to 1048576"),
    .init(
        yaml: "server:\n  io_timeout: fast\n", path: "server.io_timeout", found: "\"fast\"",
        expected: "a duration from 100ms to 1h \(durationForm)"),
    .init(
        yaml: "server:\n  io_timeout: 50ms\n", path: "server.io_timeout", found: "\"50ms\"",
        expected: "a duration from 100ms to 1h \(durationForm)"),
    .init(
        yaml: "server:\n  io_timeout: 2h\n", path: "server.io_timeout", found: "\"2h\"",
        expected: "a duration from 100ms to 1h \(durationForm)"),
    .init(
        yaml: "server:\n  idle_timeout: 30 s\n", path: "server.idle_timeout", found: "\"30 s\"",
        expected: "a duration from 1s to 24h \(durationForm)"),
    .init(
        yaml: "server:\n  idle_timeout: -5s\n", path: "server.idle_timeout", found: "\"-5s\"",
        expected: "a duration from 1s to 24h \(durationForm)"),
    .init(
        yaml: "server:\n  idle_timeout: 1d\n", path: "server.idle_timeout", found: "\"1d\"",
        expected: "a duration from 1s to 24h \(durationForm)"),
    .init(
        yaml: "policy:\n  failure_mode: accept\n", path: "policy.failure_mode", found: "\"accept\"",
        expected: "tempfail or dunno"),
    .init(
        yaml: "policy:\n  allow_authenticated_null_sender: yes\n", path: "policy.allow_authenticated_null_sender",
        found: "\"yes\"", expected: "true or false"),
    .init(
        yaml: "server:\n  allow_root: 1\n", path: "server.allow_root", found: "\"1\"", expected: "true or false"),
    .init(
        yaml: "policy:\n  recipient_delimiter: \"@\"\n", path: "policy.recipient_delimiter", found: "\"@\"",
        expected: "up to 8 ASCII punctuation characters other than @ and \", such as + or +-"),
    .init(
        yaml: "policy:\n  recipient_delimiter: x\n", path: "policy.recipient_delimiter", found: "\"x\"",
        expected: "up to 8 ASCII punctuation characters other than @ and \", such as + or +-"),
    .init(
        yaml: "policy:\n  oauth_mechanisms: xoauth2\n", path: "policy.oauth_mechanisms", found: "\"xoauth2\"",
        expected: "a sequence of SASL mechanism names"),
    .init(
        yaml: "policy:\n  app_mechanisms: [plain, \"lo gin\"]\n", path: "policy.app_mechanisms[1]",
        found: "\"lo gin\"", expected: "a SASL mechanism name of 1 to 20 letters, digits, - or _"),
    .init(
        yaml: "policy:\n  oauth_mechanisms: [PLAIN]\n", path: "policy.oauth_mechanisms", found: "a sequence",
        expected: "no mechanism in both oauth_mechanisms and app_mechanisms (both have plain)"),
    .init(
        yaml: "database:\n  url: \"\"\n", path: "database.url", found: "(secret value hidden)",
        expected: "a non-empty string"),
    .init(
        yaml: "database:\n  max_snapshot_age: 5m\n", path: "database.max_snapshot_age", found: "\"5m\"",
        expected: "max_snapshot_age longer than resync_interval (5m)"),
    .init(
        yaml: "database:\n  resync_interval: 1h\n", path: "database.resync_interval", found: "\"1h\"",
        expected: "max_snapshot_age longer than resync_interval (1h)"),
    .init(
        yaml: "identity:\n  provider: okta\n", path: "identity.provider", found: "\"okta\"",
        expected: "keycloak or authentik"),
    .init(
        yaml: "identity:\n  keycloak:\n    base_url: ftp://sso.example.com\n", path: "identity.keycloak.base_url",
        found: "\"ftp://sso.example.com\"",
        expected: "an http:// or https:// URL of the Keycloak root, without /realms, /admin, ? or #"),
    .init(
        yaml: "identity:\n  keycloak:\n    base_url: https://sso.example.com/realms/mail\n",
        path: "identity.keycloak.base_url", found: "\"https://sso.example.com/realms/mail\"",
        expected: "an http:// or https:// URL of the Keycloak root, without /realms, /admin, ? or #"),
    .init(
        yaml: "identity:\n  keycloak:\n    base_url: https:///x\n", path: "identity.keycloak.base_url",
        found: "\"https:///x\"",
        expected: "an http:// or https:// URL of the Keycloak root, without /realms, /admin, ? or #"),
    .init(
        yaml: "identity:\n  keycloak:\n    realm: \"a/b\"\n", path: "identity.keycloak.realm", found: "\"a/b\"",
        expected: "a realm name without /"),
    .init(
        yaml: "identity:\n  keycloak:\n    client_id: \"\"\n", path: "identity.keycloak.client_id", found: "\"\"",
        expected: "a non-empty string"),
    .init(
        yaml: "identity:\n  keycloak:\n    client_secret: [a]\n", path: "identity.keycloak.client_secret",
        found: "a sequence", expected: "a string"),
    .init(
        yaml: "identity:\n  keycloak:\n    client_secret: \"abc\\u0007\"\n", path: "identity.keycloak.client_secret",
        found: "(secret value hidden)", expected: "a string without control characters"),
    .init(
        yaml: "identity:\n  keycloak:\n    connect_timeout: 10s\n", path: "identity.keycloak.connect_timeout",
        found: "\"10s\"", expected: "connect_timeout no longer than request_timeout (5s)"),
    .init(
        yaml: "identity:\n  cache:\n    max_entries: 0\n", path: "identity.cache.max_entries", found: "\"0\"",
        expected: "an integer from 1 to 10000000"),
    .init(
        yaml: "log:\n  level: verbose\n", path: "log.level", found: "\"verbose\"",
        expected: "trace, debug, info, notice, warning, error, critical"),
    .init(yaml: "log:\n  format: text\n", path: "log.format", found: "\"text\"", expected: "keyvalue or json"),
    .init(
        yaml: "server:\n  policy_max_line_length: 65535\n", path: "server.policy_max_line_length",
        found: "\"65535\"", expected: "policy_max_request_size of at least policy_max_line_length + 2 (65537)"),
    .init(
        yaml: "server:\n  idle_timeout: 10s\n", path: "server.idle_timeout", found: "\"10s\"",
        expected: "io_timeout no longer than idle_timeout"),
]

@Test(arguments: invalidValueCases)
func loaderRejectsInvalidValue(_ testCase: InvalidValueCase) {
    let found = error(minimalListener + testCase.yaml)
    #expect(found?.problem == .invalidValue(found: testCase.found, expected: testCase.expected))
    #expect(found?.keyPath == testCase.path)
    #expect(found?.line != nil)
}

@Test func invalidValueNamesLine() {
    let found = error(minimalListener + "server:\n  worker_threads: 2\n  io_timeout: soon\n")
    #expect(found?.line == 6)
    let expected = "line 6: server.io_timeout: invalid value \"soon\", expected a duration from 100ms to 1h "
        + durationForm
    #expect(found?.description == expected)
}

@Test func secretNeverInErrorText() {
    let found = error(minimalListener + "identity:\n  keycloak:\n    client_secret: \"hunter2\\n\"\n")
    #expect(found?.description.contains("hunter2") == false)
    #expect(found?.keyPath == "identity.keycloak.client_secret")
}

@Test func longValueCutInError() {
    let long = String(repeating: "x", count: 200)
    let found = error(minimalListener + "log:\n  format: \(long)\n")
    #expect(found?.problem == .invalidValue(found: "\"" + String(repeating: "x", count: 80) + "...\"", expected: "keyvalue or json"))
}

// MARK: - Durations

struct DurationCase: CustomTestStringConvertible, Sendable {
    var text: String
    var seconds: Double?
    var testDescription: String { text }
}

private let durationCases: [DurationCase] = [
    .init(text: "250ms", seconds: 0.25),
    .init(text: "30s", seconds: 30),
    .init(text: "5m", seconds: 300),
    .init(text: "1h", seconds: 3600),
    .init(text: "45", seconds: 45),
    .init(text: "0.5", seconds: 0.5),
    .init(text: "1.5s", seconds: 1.5),
    .init(text: "0", seconds: 0),
    .init(text: "", seconds: nil),
    .init(text: "s", seconds: nil),
    .init(text: "ms", seconds: nil),
    .init(text: ".5s", seconds: nil),
    .init(text: "5.s", seconds: nil),
    .init(text: "1.2.3s", seconds: nil),
    .init(text: "-1s", seconds: nil),
    .init(text: "1e3", seconds: nil),
    .init(text: "1 s", seconds: nil),
    .init(text: "5M", seconds: nil),
    .init(text: "1d", seconds: nil),
    .init(text: "inf", seconds: nil),
]

@Test(arguments: durationCases)
func durationParsesUnits(_ testCase: DurationCase) {
    #expect(parseDuration(testCase.text) == testCase.seconds)
}

@Test func durationFormatsReadably() {
    #expect(formatDuration(0.25) == "250ms")
    #expect(formatDuration(30) == "30s")
    #expect(formatDuration(330) == "330s")
    #expect(formatDuration(300) == "5m")
    #expect(formatDuration(7200) == "2h")
    #expect(formatDuration(1.5) == "1.5s")
    #expect(formatDuration(0) == "0s")
}

// MARK: - Listeners

struct AddressCase: CustomTestStringConvertible, Sendable {
    var text: String
    var address: ListenAddress?
    var testDescription: String { text }
}

private let addressCases: [AddressCase] = [
    .init(text: "tcp:127.0.0.1:10027", address: .tcp(host: "127.0.0.1", port: 10027)),
    .init(text: "tcp:[::1]:10027", address: .tcp(host: "::1", port: 10027)),
    .init(text: "tcp:[fe80::1%eth0]:1", address: .tcp(host: "fe80::1%eth0", port: 1)),
    .init(text: "tcp:mail-gw.example.com:65535", address: .tcp(host: "mail-gw.example.com", port: 65535)),
    .init(text: "tcp:0.0.0.0:10028", address: .tcp(host: "0.0.0.0", port: 10028)),
    .init(text: "unix:/run/mailcloak/policy.sock", address: .unix(path: "/run/mailcloak/policy.sock")),
    .init(text: "unix:/" + String(repeating: "a", count: 106), address: .unix(path: "/" + String(repeating: "a", count: 106))),
    .init(text: "unix:/" + String(repeating: "a", count: 107), address: nil),
    .init(text: "unix:relative.sock", address: nil),
    .init(text: "tcp:::1:10027", address: nil),
    .init(text: "tcp:[::1]10027", address: nil),
    .init(text: "tcp:[127.0.0.1]:10027", address: nil),
    .init(text: "tcp:[fe80::1%]:1", address: nil),
    .init(text: "tcp:127.0.0.1", address: nil),
    .init(text: "tcp:127.0.0.1:0", address: nil),
    .init(text: "tcp:127.0.0.1:65536", address: nil),
    .init(text: "tcp:127.0.0.1:+80", address: nil),
    .init(text: "tcp::10027", address: nil),
    .init(text: "tcp:host name:10027", address: nil),
    .init(text: "inet:127.0.0.1:10027", address: nil),
    .init(text: "127.0.0.1:10027", address: nil),
]

@Test(arguments: addressCases)
func listenerAddressParses(_ testCase: AddressCase) {
    let yaml = "listeners:\n  - name: a\n    address: \"\(testCase.text)\"\n"
    switch parse(yaml) {
    case .success(let configuration):
        #expect(configuration.listeners.first?.address == testCase.address)
    case .failure(let error):
        #expect(testCase.address == nil, "\(error)")
        #expect(error.keyPath == "listeners[0].address")
    }
}

@Test func listenerServicesDefaultToBoth() throws {
    let configuration = try ConfigLoader.parse(yaml: minimalListener)
    #expect(configuration.listeners[0].services == [.policy, .socketmap])
}

@Test func listenerModeReadAsOctal() throws {
    let cases: [(text: String, mode: UInt16)] = [
        ("\"0660\"", 0o660), ("0660", 0o660), ("660", 0o660), ("'0600'", 0o600), ("0", 0),
    ]
    for (text, mode) in cases {
        let yaml = "listeners:\n  - name: a\n    address: unix:/s\n    mode: \(text)\n"
        #expect(try ConfigLoader.parse(yaml: yaml).listeners[0].unixPermissions.mode == mode, "\(text)")
    }
}

struct ListenerErrorCase: CustomTestStringConvertible, Sendable {
    var label: String
    var yaml: String
    var error: ConfigError
    var testDescription: String { label }
}

private let listenerErrorCases: [ListenerErrorCase] = [
    .init(
        label: "missing name", yaml: "listeners:\n  - address: unix:/s\n",
        error: ConfigError(.missingKey, keyPath: "listeners[0].name", line: 2)),
    .init(
        label: "missing address", yaml: "listeners:\n  - name: a\n",
        error: ConfigError(.missingKey, keyPath: "listeners[0].address", line: 2)),
    .init(
        label: "bad name", yaml: "listeners:\n  - name: \"a b\"\n    address: unix:/s\n",
        error: ConfigError(
            .invalidValue(found: "\"a b\"", expected: "1 to 64 letters, digits, '.', '_' or '-'"),
            keyPath: "listeners[0].name", line: 2)),
    .init(
        label: "duplicate name",
        yaml: "listeners:\n  - name: a\n    address: unix:/s\n  - name: a\n    address: unix:/t\n",
        error: ConfigError(
            .invalidValue(found: "\"a\"", expected: "a unique name"), keyPath: "listeners[1].name", line: 4)),
    .init(
        label: "duplicate address",
        yaml: "listeners:\n  - name: a\n    address: unix:/s\n  - name: b\n    address: unix:/s\n",
        error: ConfigError(
            .invalidValue(found: "\"unix:/s\"", expected: "an address no other listener uses"),
            keyPath: "listeners[1].address", line: 5)),
    .init(
        label: "unknown service", yaml: "listeners:\n  - name: a\n    address: unix:/s\n    services: [smtp]\n",
        error: ConfigError(
            .invalidValue(found: "\"smtp\"", expected: "policy or socketmap"), keyPath: "listeners[0].services[0]",
            line: 4)),
    .init(
        label: "repeated service",
        yaml: "listeners:\n  - name: a\n    address: unix:/s\n    services: [policy, policy]\n",
        error: ConfigError(
            .invalidValue(found: "\"policy\"", expected: "each service once"), keyPath: "listeners[0].services[1]",
            line: 4)),
    .init(
        label: "empty services", yaml: "listeners:\n  - name: a\n    address: unix:/s\n    services: []\n",
        error: ConfigError(
            .invalidValue(found: "a sequence", expected: "a non-empty sequence of policy and socketmap"),
            keyPath: "listeners[0].services", line: 4)),
    .init(
        label: "mode on tcp", yaml: "listeners:\n  - name: a\n    address: tcp:127.0.0.1:1\n    mode: \"0600\"\n",
        error: ConfigError(
            .invalidValue(found: "\"0600\"", expected: "no mode on a tcp: listener (it applies to unix: sockets)"),
            keyPath: "listeners[0].mode", line: 4)),
    .init(
        label: "mode not octal", yaml: "listeners:\n  - name: a\n    address: unix:/s\n    mode: \"0680\"\n",
        error: ConfigError(
            .invalidValue(found: "\"0680\"", expected: "an octal mode from 0000 to 0777, such as \"0660\""),
            keyPath: "listeners[0].mode", line: 4)),
    .init(
        label: "mode with setuid", yaml: "listeners:\n  - name: a\n    address: unix:/s\n    mode: \"4755\"\n",
        error: ConfigError(
            .invalidValue(found: "\"4755\"", expected: "an octal mode from 0000 to 0777, such as \"0660\""),
            keyPath: "listeners[0].mode", line: 4)),
    .init(
        label: "owner with colon", yaml: "listeners:\n  - name: a\n    address: unix:/s\n    owner: \"a:b\"\n",
        error: ConfigError(
            .invalidValue(found: "\"a:b\"", expected: "a user or group name or number"),
            keyPath: "listeners[0].owner", line: 4)),
    .init(
        label: "listener not a mapping", yaml: "listeners:\n  - unix:/s\n",
        error: ConfigError(
            .invalidValue(found: "\"unix:/s\"", expected: "a mapping"), keyPath: "listeners[0]", line: 2)),
]

@Test(arguments: listenerErrorCases)
func loaderRejectsBadListener(_ testCase: ListenerErrorCase) {
    #expect(error(testCase.yaml) == testCase.error)
}

// MARK: - Files

/// Creates a directory under the test's TMPDIR; the caller removes it.
private func makeTemporaryDirectory() throws -> String {
    let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    var template = Array("\(base)/config-tests.XXXXXX".utf8CString)
    let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    try #require(created != nil)
    return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

private func write(_ bytes: [UInt8], to path: String) throws {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    try #require(descriptor >= 0)
    defer { close(descriptor) }
    let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
    try #require(written == bytes.count)
}

@Test func loadReadsFile() throws {
    let directory = try makeTemporaryDirectory()
    defer { rmdir(directory) }
    let path = directory + "/mailcloak.yaml"
    defer { unlink(path) }
    try write(Array(minimalListener.utf8), to: path)
    #expect(try ConfigLoader.load(path: path).listeners.count == 1)
}

@Test func loadNamesFileInError() throws {
    let directory = try makeTemporaryDirectory()
    defer { rmdir(directory) }
    let path = directory + "/mailcloak.yaml"
    defer { unlink(path) }
    try write(Array((minimalListener + "log:\n  level: loud\n").utf8), to: path)
    #expect(throws: ConfigError.self) { try ConfigLoader.load(path: path) }
    do {
        _ = try ConfigLoader.load(path: path)
    } catch {
        #expect(error.file == path)
        #expect(error.description.hasPrefix(path + ":5: log.level: invalid value \"loud\""))
    }
}

@Test func loadReportsMissingFile() {
    let path = "/nonexistent/mailcloak.yaml"
    #expect(throws: ConfigError(.unreadableFile(reason: "No such file or directory"), file: path)) {
        try ConfigLoader.load(path: path)
    }
}

@Test func loadRejectsOversizedFile() throws {
    let directory = try makeTemporaryDirectory()
    defer { rmdir(directory) }
    let path = directory + "/big.yaml"
    defer { unlink(path) }
    try write(Array("# ".utf8) + [UInt8](repeating: 0x78, count: 3 << 20), to: path)
    #expect(throws: ConfigError(.documentTooLarge(limit: 1 << 20), file: path)) {
        try ConfigLoader.load(path: path)
    }
}

@Test func loadRejectsInvalidUTF8() throws {
    let directory = try makeTemporaryDirectory()
    defer { rmdir(directory) }
    let path = directory + "/latin1.yaml"
    defer { unlink(path) }
    try write(Array(minimalListener.utf8) + Array("identity:\n  keycloak:\n    realm: caf".utf8) + [0xE9, 0x0A], to: path)
    #expect(throws: ConfigError(.syntax(message: "the file is not valid UTF-8"), file: path)) {
        try ConfigLoader.load(path: path)
    }
}
