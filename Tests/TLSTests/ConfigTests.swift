// Loading the listener security keys: tls, acl and proxy_protocol_from.
import Config
import Foundation
import Testing

private let tlsListener = """
    listeners:
      - name: cluster
        address: "tcp:127.0.0.1:10443"
        proxy_protocol_from: ["10.0.0.5", "2001:db8::/32"]
        tls:
          certificate: /etc/m/server.crt
          key: /etc/m/server.key
          client_ca: /etc/m/ca.crt
          crl: [/etc/m/ca.crl]
          min_version: "1.3"
          handshake_timeout: 2s
          session_ticket_keys: /etc/m/ticket-keys
          resumption_max_age: 30m
        acl:
          - name: nodes
            identities: ["cn:mx1", "DNS:MX2.example", "uri:spiffe://mail.example/node/mx3"]
            networks: [10.0.0.0/8]
            services: [policy, "socketmap:alias"]
    """

@Test func tlsListenerLoadsEveryKey() throws {
    let listener = try ConfigLoader.parse(yaml: tlsListener).listeners[0]
    var tls = ListenerTLSConfig(certificate: "/etc/m/server.crt", key: "/etc/m/server.key", clientCA: "/etc/m/ca.crt")
    tls.crl = ["/etc/m/ca.crl"]
    tls.minVersion = .tls13
    tls.handshakeTimeout = 2
    tls.sessionTicketKeys = "/etc/m/ticket-keys"
    tls.resumptionMaxAge = 1800
    #expect(listener.tls == tls)
    // The key file is watched for changes with the certificate files.
    #expect(tls.files == ["/etc/m/server.crt", "/etc/m/server.key", "/etc/m/ca.crt", "/etc/m/ca.crl", "/etc/m/ticket-keys"])
    var rule = ACLRule(name: "nodes")
    rule.identities = [.commonName("mx1"), .dnsName("mx2.example"), .uri("spiffe://mail.example/node/mx3")]
    rule.networks = [IPNetwork("10.0.0.0/8")!]
    rule.policy = true
    rule.maps = ["alias"]
    #expect(listener.acl == [rule])
    #expect(listener.proxyProtocolFrom == [IPNetwork("10.0.0.5/32")!, IPNetwork("2001:db8::/32")!])
}

@Test func tlsListenerWithoutACLIsRefused() {
    let yaml = tlsListener.components(separatedBy: "    acl:")[0]
    #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml: yaml) }
}

@Test func unknownIdentityKindIsRefused() {
    let yaml = tlsListener.replacingOccurrences(of: "\"cn:mx1\"", with: "\"email:mx1\"")
    #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml: yaml) }
}

@Test func unknownIdentityErrorNamesItem() {
    let yaml = tlsListener.replacingOccurrences(of: "\"DNS:MX2.example\"", with: "\"common:mx2\"")
    let expected = ConfigError(
        .invalidValue(
            found: "\"common:mx2\"",
            expected: "cn:NAME, dns:NAME, uri:URI or sha256:HEX (64 hex digits, colons allowed)"),
        keyPath: "listeners[0].acl[0].identities[1]", line: 16)
    #expect(throws: expected) { try ConfigLoader.parse(yaml: yaml) }
}

@Test func unknownServiceGrantIsRefused() {
    let yaml = tlsListener.replacingOccurrences(of: "[policy, \"socketmap:alias\"]", with: "[socketmap]")
    #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml: yaml) }
}

@Test func relativeCertificatePathIsRefused() {
    let yaml = tlsListener.replacingOccurrences(of: "/etc/m/server.crt", with: "server.crt")
    #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml: yaml) }
}

@Test func relativeTicketKeyPathIsRefused() {
    let yaml = tlsListener.replacingOccurrences(of: "/etc/m/ticket-keys", with: "ticket-keys")
    let expected = ConfigError(
        .invalidValue(found: "\"ticket-keys\"", expected: "an absolute path"),
        keyPath: "listeners[0].tls.session_ticket_keys", line: 12)
    #expect(throws: expected) { try ConfigLoader.parse(yaml: yaml) }
}

@Test func fingerprintIdentityParsesHex() throws {
    let hex = String(repeating: "AB:", count: 31) + "AB"
    let yaml = tlsListener.replacingOccurrences(of: "\"cn:mx1\"", with: "\"sha256:\(hex)\"")
    let rule = try ConfigLoader.parse(yaml: yaml).listeners[0].acl![0]
    #expect(rule.identities[0] == .fingerprint(Array(repeating: 0xAB, count: 32)))
}
