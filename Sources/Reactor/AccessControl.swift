// Access rules, evaluated once per connection after the TLS handshake (or
// at accept on a plain listener): the verified certificate's identity and
// the client's address decide which services the connection may use.
// Access is denied unless a rule grants it.
import COpenSSL
import CShim
import Config

/// What a verified client certificate says about its holder.
public struct PeerIdentity: Sendable, Equatable, CustomStringConvertible {
    public var commonName: String?
    public var dnsNames: [String]
    public var uris: [String]
    /// SHA-256 over the certificate's DER form.
    public var fingerprint: [UInt8]

    public init(commonName: String?, dnsNames: [String] = [], uris: [String] = [], fingerprint: [UInt8] = []) {
        self.commonName = commonName
        self.dnsNames = dnsNames
        self.uris = uris
        self.fingerprint = fingerprint
    }

    init(certificate: OpaquePointer) {
        var buffer = [CChar](repeating: 0, count: 1024)
        let length = mc_x509_common_name(certificate, &buffer, Int32(buffer.count))
        commonName = length >= 0 ? buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : nil
        dnsNames = []
        uris = []
        var names: UnsafeMutableRawPointer?
        let count = mc_x509_san_count(certificate, &names)
        defer { mc_x509_san_free(names) }
        for index in 0..<min(count, 100) {
            var data: UnsafePointer<UInt8>?
            var size: Int32 = 0
            let kind = mc_x509_san_entry(names, index, &data, &size)
            guard let data, size > 0, size <= 2048 else { continue }
            let text = String(decoding: UnsafeBufferPointer(start: data, count: Int(size)), as: UTF8.self)
            if kind == 1 { dnsNames.append(text.lowercased()) }
            if kind == 2 { uris.append(text) }
        }
        fingerprint = Reactor.fingerprint(certificate)
    }

    /// Whether this identity shows `wanted`.
    public func matches(_ wanted: ACLIdentity) -> Bool {
        switch wanted {
        case .commonName(let name): commonName == name
        case .dnsName(let name): dnsNames.contains(name.lowercased())
        case .uri(let uri): uris.contains(uri)
        case .fingerprint(let bytes): fingerprint == bytes
        }
    }

    public var description: String {
        var parts: [String] = []
        if let commonName { parts.append("cn:\(commonName)") }
        parts += dnsNames.map { "dns:\($0)" } + uris.map { "uri:\($0)" }
        return parts.joined(separator: ",")
    }
}

/// The services one connection may use.
public struct AccessGrant: Sendable, Equatable {
    public var policy: Bool
    /// Socketmap maps granted; `*` grants every map.
    public var maps: Set<String>
    /// Names of the rules that matched, for logs.
    public var rules: [String]

    public init(policy: Bool, maps: Set<String>, rules: [String]) {
        self.policy = policy
        self.maps = maps
        self.rules = rules
    }

    /// Every service, for listeners without access rules.
    public static let everything = AccessGrant(policy: true, maps: ["*"], rules: [])
    /// No service.
    public static let nothing = AccessGrant(policy: false, maps: [], rules: [])

    public func allowsMap(_ name: String) -> Bool {
        maps.contains("*") || maps.contains(name)
    }

    /// The union of every rule that matches `identity` and `address` (4 or 16 bytes).
    public static func evaluate(_ rules: [ACLRule], identity: PeerIdentity?, address: [UInt8]?) -> AccessGrant {
        var grant = AccessGrant.nothing
        for rule in rules {
            if !rule.identities.isEmpty {
                guard let identity, rule.identities.contains(where: identity.matches) else { continue }
            }
            if !rule.networks.isEmpty {
                guard let address, rule.networks.contains(where: { $0.contains(address) }) else { continue }
            }
            grant.policy = grant.policy || rule.policy
            grant.maps.formUnion(rule.maps)
            grant.rules.append(rule.name)
        }
        return grant
    }
}
