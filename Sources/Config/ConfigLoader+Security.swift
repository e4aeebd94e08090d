// The security keys of a listener: `tls`, `acl` and `proxy_protocol_from`.
// A TLS listener needs access rules, because access is denied by default.

extension ConfigLoader {
    static func readSecurity(_ section: ConfigMapping, address: ListenAddress, into listener: inout ListenerConfig)
        throws(ConfigError)
    {
        let isTCP: Bool
        if case .tcp = address { isTCP = true } else { isTCP = false }
        if let node = section.node("tls") {
            guard isTCP else {
                throw invalid(node, section.path("tls"), expected: "no tls on a unix: listener (it applies to tcp: listeners)")
            }
            listener.tls = try tlsSection(node, path: section.path("tls"))
        }
        if let node = section.node("acl") {
            listener.acl = try aclRules(node, path: section.path("acl"))
        } else if listener.tls != nil {
            throw ConfigError(.missingKey, keyPath: section.path("acl"), line: section.line)
        }
        if let node = section.node("proxy_protocol_from") {
            guard isTCP else {
                throw invalid(node, section.path("proxy_protocol_from"), expected: "no proxy_protocol_from on a unix: listener")
            }
            listener.proxyProtocolFrom = try networks(node, path: section.path("proxy_protocol_from"))
        }
    }

    private static func tlsSection(_ node: YAMLNode, path: String) throws(ConfigError) -> ListenerTLSConfig {
        let section = try mapping(node, path: path)
        let certificate = try filePath(try section.required("certificate"), path: section.path("certificate"))
        let key = try filePath(try section.required("key"), path: section.path("key"))
        let clientCA = try filePath(try section.required("client_ca"), path: section.path("client_ca"))
        var tls = ListenerTLSConfig(certificate: certificate, key: key, clientCA: clientCA)
        if let crlNode = section.node("crl") {
            tls.crl = try stringList(crlNode, path: section.path("crl"), expected: "a sequence of CRL file paths")
                .enumerated().map { index, text throws(ConfigError) in
                    guard text.hasPrefix("/") else {
                        throw invalid(crlNode, section.path("crl") + "[\(index)]", expected: "an absolute path")
                    }
                    return text
                }
        }
        if let node = section.node("session_ticket_keys") {
            tls.sessionTicketKeys = try filePath(node, path: section.path("session_ticket_keys"))
        }
        try section.readChoice("min_version", into: &tls.minVersion, choices: [.tls12, .tls13])
        if let node = section.node("ciphers") { tls.ciphers = try string(node, path: section.path("ciphers")) }
        if let node = section.node("cipher_suites") {
            tls.cipherSuites = try string(node, path: section.path("cipher_suites"))
        }
        try section.readInt("verify_depth", into: &tls.verifyDepth, range: 1...10)
        try section.readDuration("handshake_timeout", into: &tls.handshakeTimeout, range: 0.1...300)
        try section.readDuration("expiry_warning", into: &tls.expiryWarning, range: 0...(366 * 86400))
        try section.readDuration("resumption_max_age", into: &tls.resumptionMaxAge, range: 1...86400)
        try section.readDuration("reload_interval", into: &tls.reloadInterval, range: 0...3600)
        if tls.reloadInterval > 0 && tls.reloadInterval < 1 {
            throw invalid(try section.required("reload_interval"), section.path("reload_interval"),
                          expected: "0 (off) or a duration from 1s to 1h")
        }
        return tls
    }

    private static func filePath(_ node: YAMLNode, path: String) throws(ConfigError) -> String {
        let text = try string(node, path: path)
        guard text.hasPrefix("/") else { throw invalid(node, path, expected: "an absolute path") }
        return text
    }

    private static func stringList(_ node: YAMLNode, path: String, expected: String) throws(ConfigError) -> [String] {
        guard case .sequence(let items) = node.content else { throw invalid(node, path, expected: expected) }
        guard items.count <= 1000 else { throw invalid(node, path, expected: expected + " of at most 1000 entries") }
        var values: [String] = []
        for (index, item) in items.enumerated() {
            values.append(try string(item, path: "\(path)[\(index)]"))
        }
        return values
    }

    private static func networks(_ node: YAMLNode, path: String) throws(ConfigError) -> [IPNetwork] {
        let expected = "a sequence of networks such as 192.0.2.0/24 or 2001:db8::/32"
        guard case .sequence(let items) = node.content else { throw invalid(node, path, expected: expected) }
        var result: [IPNetwork] = []
        for (index, item) in items.enumerated() {
            let text = try string(item, path: "\(path)[\(index)]")
            guard let network = IPNetwork(text) else {
                throw invalid(item, "\(path)[\(index)]", expected: "a network such as 192.0.2.0/24 or 2001:db8::/32")
            }
            result.append(network)
        }
        return result
    }

    private static func aclRules(_ node: YAMLNode, path: String) throws(ConfigError) -> [ACLRule] {
        guard case .sequence(let items) = node.content else {
            throw invalid(node, path, expected: "a sequence of access rules")
        }
        guard items.count <= 10000 else { throw invalid(node, path, expected: "at most 10000 access rules") }
        var rules: [ACLRule] = []
        for (index, item) in items.enumerated() {
            let rulePath = "\(path)[\(index)]"
            let section = try mapping(item, path: rulePath)
            let name = try string(try section.required("name"), path: section.path("name"))
            var rule = ACLRule(name: name)
            if let node = section.node("identities") {
                let texts = try stringList(node, path: section.path("identities"), expected: "a sequence of identities")
                for (position, text) in texts.enumerated() {
                    guard let identity = aclIdentity(text) else {
                        var itemNode = node
                        if case .sequence(let items) = node.content { itemNode = items[position] }
                        throw invalid(itemNode, section.path("identities") + "[\(position)]",
                                      expected: "cn:NAME, dns:NAME, uri:URI or sha256:HEX (64 hex digits, colons allowed)")
                    }
                    rule.identities.append(identity)
                }
            }
            if let node = section.node("networks") {
                rule.networks = try networks(node, path: section.path("networks"))
            }
            if rule.identities.isEmpty && rule.networks.isEmpty {
                throw ConfigError(.missingKey, keyPath: section.path("identities"), line: section.line)
            }
            let servicesNode = try section.required("services")
            let services = try stringList(servicesNode, path: section.path("services"), expected: "a sequence of services")
            guard !services.isEmpty else {
                throw invalid(servicesNode, section.path("services"), expected: "policy, socketmap:MAP or socketmap:*")
            }
            for (position, text) in services.enumerated() {
                if text == "policy" {
                    rule.policy = true
                } else if text.hasPrefix("socketmap:"), text.count > "socketmap:".count, !text.contains(" ") {
                    rule.maps.insert(String(text.dropFirst("socketmap:".count)))
                } else {
                    throw invalid(servicesNode, section.path("services") + "[\(position)]",
                                  expected: "policy, socketmap:MAP or socketmap:*")
                }
            }
            rules.append(rule)
        }
        return rules
    }

    /// Parses `cn:NAME`, `dns:NAME`, `uri:URI` or `sha256:HEX`.
    static func aclIdentity(_ text: String) -> ACLIdentity? {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let kind = text[..<colon].lowercased()
        let value = String(text[text.index(after: colon)...])
        guard !value.isEmpty else { return nil }
        switch kind {
        case "cn": return .commonName(value)
        case "dns": return .dnsName(value.lowercased())
        case "uri": return .uri(value)
        case "sha256":
            let digits = value.filter { $0 != ":" }
            guard digits.count == 64, digits.allSatisfy(\.isHexDigit) else { return nil }
            var bytes: [UInt8] = []
            var index = digits.startIndex
            while index < digits.endIndex {
                let next = digits.index(index, offsetBy: 2)
                bytes.append(UInt8(digits[index..<next], radix: 16)!)
                index = next
            }
            return .fingerprint(bytes)
        default: return nil
        }
    }
}
