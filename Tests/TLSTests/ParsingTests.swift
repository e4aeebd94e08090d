// PROXY v2 headers, networks and access rule evaluation.
import Config
import Reactor
import Testing

@Test func proxyHeaderParsesIPv4Source() {
    let bytes = ProxyHeader.signature + [0x21, 0x11, 0x00, 0x0C, 192, 0, 2, 7, 10, 0, 0, 1, 0x30, 0x39, 0x00, 0x19]
    #expect(ProxyHeader.parse(bytes) == .proxied(address: [192, 0, 2, 7], port: 12345, length: 28))
}

@Test func proxyHeaderAsksForMoreBytes() {
    let bytes = ProxyHeader.signature + [0x21, 0x11, 0x00, 0x0C, 192]
    #expect(ProxyHeader.parse(bytes) == .needMore(28))
}

@Test func proxyHeaderLocalKeepsAddress() {
    #expect(ProxyHeader.parse(ProxyHeader.signature + [0x20, 0x00, 0x00, 0x00]) == .local(length: 16))
}

@Test func proxyHeaderRejectsVersionOne() {
    #expect(ProxyHeader.parse(Array("PROXY TCP4 ".utf8)) == .invalid("no PROXY protocol v2 signature"))
}

@Test func proxyHeaderRejectsHugeBlock() {
    let bytes = ProxyHeader.signature + [0x21, 0x11, 0xFF, 0xFF]
    #expect(ProxyHeader.parse(bytes) == .invalid("PROXY header address block of 65535 bytes, limit 512"))
}

@Test func networkMatchesIPv4Prefix() {
    let network = IPNetwork("10.1.0.0/16")!
    #expect(network.contains([10, 1, 200, 3]))
    #expect(!network.contains([10, 2, 0, 1]))
}

@Test func networkMatchesMappedIPv4() {
    let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 1, 0, 9]
    #expect(IPNetwork("10.1.0.0/16")!.contains(mapped))
}

@Test func networkMatchesIPv6Prefix() {
    let network = IPNetwork("2001:db8::/32")!
    #expect(network.contains(IPNetwork.parseAddress("2001:db8:1::5")!))
    #expect(!network.contains(IPNetwork.parseAddress("2001:db9::5")!))
}

@Test func networkRejectsBadPrefix() {
    #expect(IPNetwork("10.0.0.0/33") == nil)
    #expect(IPNetwork("host.example/8") == nil)
}

@Test func grantNeedsIdentityAndNetwork() {
    var rule = ACLRule(name: "both")
    rule.identities = [.dnsName("mx1.example")]
    rule.networks = [IPNetwork("10.0.0.0/8")!]
    rule.policy = true
    let identity = PeerIdentity(commonName: "mx1", dnsNames: ["mx1.example"])
    #expect(AccessGrant.evaluate([rule], identity: identity, address: [10, 0, 0, 1]).policy)
    #expect(!AccessGrant.evaluate([rule], identity: identity, address: [192, 0, 2, 1]).policy)
    #expect(!AccessGrant.evaluate([rule], identity: nil, address: [10, 0, 0, 1]).policy)
}

@Test func grantDeniesWithoutRules() {
    #expect(AccessGrant.evaluate([], identity: PeerIdentity(commonName: "mx1"), address: [127, 0, 0, 1]) == .nothing)
}

@Test func grantMatchesFingerprint() {
    var rule = ACLRule(name: "pinned")
    rule.identities = [.fingerprint([1, 2, 3])]
    rule.maps = ["*"]
    let grant = AccessGrant.evaluate([rule], identity: PeerIdentity(commonName: nil, fingerprint: [1, 2, 3]), address: nil)
    #expect(grant.allowsMap("anything"))
}
