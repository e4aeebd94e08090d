// The security settings of a listener: mutual TLS material, access rules
// (ACLs) and the load balancers allowed to send a PROXY protocol v2 header.
#if canImport(Glibc)
import Glibc
#endif

/// Mutual TLS on one TCP listener.
public struct ListenerTLSConfig: Sendable, Equatable {
    /// The lowest TLS version accepted.
    public enum MinimumVersion: String, Sendable, Equatable {
        case tls12 = "1.2"
        case tls13 = "1.3"
    }

    /// PEM file with the server certificate, then its intermediates.
    public var certificate: String
    /// PEM file with the server's unencrypted private key (ECDSA or RSA).
    public var key: String
    /// PEM bundle of the CAs whose client certificates are accepted.
    public var clientCA: String
    /// PEM CRL files; when any is set, client certificates are checked against them.
    public var crl: [String] = []
    public var minVersion: MinimumVersion = .tls12
    /// OpenSSL cipher list for TLS 1.2; nil keeps OpenSSL's default.
    public var ciphers: String?
    /// OpenSSL cipher suites for TLS 1.3; nil keeps OpenSSL's default.
    public var cipherSuites: String?
    /// Maximum number of intermediate CAs between a client certificate and its trusted CA.
    public var verifyDepth: Int = 3
    /// Time a client has to finish the TLS handshake (and send a PROXY header).
    public var handshakeTimeout: Seconds = 10
    /// A warning is logged when a loaded certificate expires within this time.
    public var expiryWarning: Seconds = 30 * 86400
    /// How often the certificate, key, CA, CRL and ticket key files are checked for changes; 0 turns it off.
    public var reloadInterval: Seconds = 5
    /// Maximum time after a full handshake, the one that checks the client
    /// certificate, during which the client may resume its session.
    public var resumptionMaxAge: Seconds = 7200
    /// File of session ticket keys shared by the instances of a cluster, one
    /// key a line. When nil, each TLS context makes random keys of its own.
    public var sessionTicketKeys: String?

    public init(certificate: String, key: String, clientCA: String) {
        self.certificate = certificate
        self.key = key
        self.clientCA = clientCA
    }

    /// Every file this configuration reads.
    public var files: [String] { [certificate, key, clientCA] + crl + (sessionTicketKeys.map { [$0] } ?? []) }
}

/// One client identity an access rule matches, from a verified client certificate.
public enum ACLIdentity: Sendable, Equatable, CustomStringConvertible {
    /// The subject common name, compared exactly.
    case commonName(String)
    /// A DNS subjectAltName, compared without regard to ASCII case.
    case dnsName(String)
    /// A URI subjectAltName, such as a SPIFFE ID, compared exactly.
    case uri(String)
    /// The SHA-256 fingerprint of the whole certificate (32 bytes).
    case fingerprint([UInt8])

    public var description: String {
        switch self {
        case .commonName(let name): "cn:\(name)"
        case .dnsName(let name): "dns:\(name)"
        case .uri(let uri): "uri:\(uri)"
        case .fingerprint(let bytes): "sha256:" + bytes.map { hex2($0) }.joined(separator: ":")
        }
    }
}

private func hex2(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
}

/// An IPv4 or IPv6 network in CIDR form.
public struct IPNetwork: Sendable, Equatable, CustomStringConvertible {
    /// 4 or 16 address bytes, with the bits past the prefix cleared.
    public let address: [UInt8]
    public let prefixLength: Int

    /// Parses `192.0.2.0/24`, `2001:db8::/32`, or an address alone (a single host).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let host = parts.first, let bytes = IPNetwork.parseAddress(String(host)) else { return nil }
        var prefix = bytes.count * 8
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].allSatisfy({ ("0"..."9").contains($0) }), parts[1].count <= 3,
                let value = Int(parts[1]), value <= bytes.count * 8
            else { return nil }
            prefix = value
        }
        self.prefixLength = prefix
        self.address = IPNetwork.masked(bytes, prefix: prefix)
    }

    /// Parses a numeric IPv4 or IPv6 address into 4 or 16 bytes.
    public static func parseAddress(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    static func masked(_ bytes: [UInt8], prefix: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let bits = max(0, min(8, prefix - index * 8))
            return bits == 8 ? byte : byte & ~(UInt8(0xFF) >> bits)
        }
    }

    /// Whether `address` (4 or 16 bytes) lies in this network. An IPv4-mapped
    /// IPv6 address (::ffff:a.b.c.d) matches IPv4 networks.
    public func contains(_ address: [UInt8]) -> Bool {
        var candidate = address
        if candidate.count == 16, self.address.count == 4, candidate[0..<10].allSatisfy({ $0 == 0 }),
            candidate[10] == 0xFF, candidate[11] == 0xFF
        {
            candidate = Array(candidate[12...])
        }
        guard candidate.count == self.address.count else { return false }
        return IPNetwork.masked(candidate, prefix: prefixLength) == self.address
    }

    public var description: String {
        if address.count == 4 {
            return address.map(String.init).joined(separator: ".") + "/\(prefixLength)"
        }
        var raw = in6_addr()
        withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: address) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
        return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } + "/\(prefixLength)"
    }
}

/// One access rule: when a client matches, it gets the rule's services.
public struct ACLRule: Sendable, Equatable {
    /// Name used in logs.
    public var name: String
    /// The client matches when its certificate shows any of these; empty matches any client.
    public var identities: [ACLIdentity] = []
    /// The client matches when its address lies in any of these; empty matches any address.
    public var networks: [IPNetwork] = []
    /// Whether the rule grants the policy service.
    public var policy = false
    /// Socketmap map names granted; `*` grants every map.
    public var maps: Set<String> = []

    public init(name: String) {
        self.name = name
    }
}
