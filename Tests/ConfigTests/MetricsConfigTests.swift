// The metrics section: its address forms, turning it off, and rejected values.
import Testing
@testable import Config

private let listenerYAML = """
    listeners:
      - name: a
        address: unix:/s

    """

@Test func metricsDefaultsWithoutSection() throws {
    let configuration = try ConfigLoader.parse(yaml: listenerYAML)
    #expect(configuration.metrics.enabled == true)
    #expect(configuration.metrics.listen == "127.0.0.1:9464")
}

@Test(arguments: [
    ("127.0.0.1:9100", "127.0.0.1", UInt16(9100)), ("\"[::1]:0\"", "::1", 0), ("0.0.0.0:9464", "0.0.0.0", 9464),
])
func metricsListenParsesAddress(text: String, host: String, port: UInt16) throws {
    let configuration = try ConfigLoader.parse(yaml: listenerYAML + "metrics:\n  listen: \(text)\n")
    #expect(configuration.metrics.host == host)
    #expect(configuration.metrics.port == port)
}

@Test func metricsEnabledFalseTurnsOff() throws {
    let configuration = try ConfigLoader.parse(yaml: listenerYAML + "metrics:\n  enabled: false\n")
    #expect(configuration.metrics.enabled == false)
}

@Test(arguments: ["localhost:9464", "127.0.0.1", "127.0.0.1:70000", "::1:9464", "[127.0.0.1]:9464", "1.2.3:80"])
func metricsListenRejectsInvalidAddress(text: String) {
    #expect(throws: ConfigError.self) {
        _ = try ConfigLoader.parse(yaml: listenerYAML + "metrics:\n  listen: \"\(text)\"\n")
    }
}
