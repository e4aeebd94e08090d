// ConfigurationChanges: which changed keys a SIGHUP reload applies and which
// wait for a restart, for each kind of section and listener change.

import Testing

@testable import Config

private func listener(_ name: String, tls: Bool = false, acl: [ACLRule]? = nil) -> ListenerConfig {
    var listener = ListenerConfig(name: name, address: .tcp(host: "127.0.0.1", port: 10027))
    if tls {
        listener.tls = ListenerTLSConfig(
            certificate: "/etc/mailcloak/server.crt", key: "/etc/mailcloak/server.key",
            clientCA: "/etc/mailcloak/ca.crt")
    }
    listener.acl = acl
    return listener
}

private func configuration(_ listeners: [ListenerConfig] = [listener("mtls", tls: true)]) -> Configuration {
    Configuration(listeners: listeners)
}

@Test func changesEmptyForSameConfiguration() {
    let changes = ConfigurationChanges(running: configuration(), loaded: configuration())
    #expect(changes.isEmpty)
}

@Test func changesApplyLogLevel() {
    var loaded = configuration()
    loaded.log.level = "debug"
    let changes = ConfigurationChanges(running: configuration(), loaded: loaded)
    #expect(changes.applied == ["log"])
    #expect(changes.needRestart == [])
}

@Test func changesApplyCacheKeys() {
    var loaded = configuration()
    loaded.identity.cache.maxEntries = 10
    loaded.identity.cache.negativeTTL = 5
    let changes = ConfigurationChanges(running: configuration(), loaded: loaded)
    #expect(changes.applied == ["identity.cache.max_entries", "identity.cache.negative_ttl"])
}

@Test func changesRestartServerKeys() {
    var loaded = configuration()
    loaded.server.ioTimeout = 5
    loaded.server.limits.maxConnections = 20
    let changes = ConfigurationChanges(running: configuration(), loaded: loaded)
    #expect(changes.needRestart == ["server.io_timeout", "server.max_connections"])
    #expect(changes.applied == [])
}

@Test func changesRestartDatabaseAndProvider() {
    var loaded = configuration()
    loaded.database.url = "postgresql://mailcloak@db.example/mailcloak"
    loaded.identity.keycloak.realm = "other"
    let changes = ConfigurationChanges(running: configuration(), loaded: loaded)
    #expect(changes.needRestart == ["database", "identity.keycloak"])
}

@Test func changesApplyTLSOfTLSListener() {
    var changed = listener("mtls", tls: true)
    changed.tls?.certificate = "/etc/mailcloak/new.crt"
    changed.acl = [ACLRule(name: "mx")]
    let changes = ConfigurationChanges(running: configuration(), loaded: configuration([changed]))
    #expect(changes.applied == ["listeners[mtls].tls", "listeners[mtls].acl"])
    #expect(changes.needRestart == [])
}

@Test func changesRestartTLSTurnedOff() {
    let changes = ConfigurationChanges(running: configuration(), loaded: configuration([listener("mtls")]))
    #expect(changes.needRestart == ["listeners[mtls].tls"])
    #expect(changes.applied == [])
}

@Test func changesRestartACLOnPlainListener() {
    let rule = ACLRule(name: "mx")
    let changes = ConfigurationChanges(
        running: configuration([listener("plain")]), loaded: configuration([listener("plain", acl: [rule])]))
    #expect(changes.needRestart == ["listeners[plain].acl"])
}

@Test func changesRestartAddedAndRemovedListeners() {
    let changes = ConfigurationChanges(
        running: configuration([listener("old")]), loaded: configuration([listener("new")]))
    #expect(changes.needRestart == ["listeners[old]", "listeners[new]"])
}

@Test func changesRestartMovedListener() {
    var moved = listener("mtls", tls: true)
    moved.address = .tcp(host: "127.0.0.1", port: 10028)
    let changes = ConfigurationChanges(running: configuration(), loaded: configuration([moved]))
    #expect(changes.needRestart == ["listeners[mtls].address"])
}

@Test func applyingKeepsRestartOnlyValues() {
    var loaded = configuration()
    loaded.log.level = "debug"
    loaded.server.ioTimeout = 5
    loaded.identity.cache.maxEntries = 10
    let inForce = ConfigurationChanges.applying(loaded, to: configuration())
    #expect(inForce.log.level == "debug")
    #expect(inForce.identity.cache.maxEntries == 10)
    #expect(inForce.server.ioTimeout == ServerConfig().ioTimeout)
}

@Test func serverKeyChangesListEveryServerKey() throws {
    let listed = ConfigurationChanges.serverKeyChanges(ServerConfig(), ServerConfig()).map(\.0)
    let allowed = try #require(ConfigLoader.allowedKeys.first { $0.path == "server" }).keys
    #expect(listed.sorted() == allowed.sorted())
}
