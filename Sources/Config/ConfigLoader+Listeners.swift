// The `listeners` section: a non-empty sequence of listening sockets, each
// with a unique name and address, the services it offers, and for UNIX
// sockets the owner, group and mode applied after bind.

extension ConfigLoader {
    static func listenerSection(_ top: ConfigMapping) throws(ConfigError) -> [ListenerConfig] {
        guard let node = top.node("listeners") else {
            throw ConfigError(.missingKey, keyPath: "listeners", line: top.line)
        }
        guard case .sequence(let items) = node.content, !items.isEmpty else {
            throw invalid(node, "listeners", expected: "a non-empty sequence of listeners")
        }

        var listeners: [ListenerConfig] = []
        for (index, item) in items.enumerated() {
            let path = "listeners[\(index)]"
            let listener = try listener(item, path: path)
            let section = try mapping(item, path: path)
            if listeners.contains(where: { $0.name == listener.name }) {
                throw invalid(try section.required("name"), section.path("name"), expected: "a unique name")
            }
            if listeners.contains(where: { $0.address == listener.address }) {
                throw invalid(
                    try section.required("address"), section.path("address"),
                    expected: "an address no other listener uses")
            }
            listeners.append(listener)
        }
        return listeners
    }

    private static func listener(_ node: YAMLNode, path: String) throws(ConfigError) -> ListenerConfig {
        let section = try mapping(node, path: path)

        let nameNode = try section.required("name")
        let name = try string(nameNode, path: section.path("name"))
        let nameIsValid = name.count <= 64 && name.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "._-".unicodeScalars.contains(scalar))
        }
        if !nameIsValid {
            throw invalid(nameNode, section.path("name"), expected: "1 to 64 letters, digits, '.', '_' or '-'")
        }

        let addressNode = try section.required("address")
        let address = try listenAddress(addressNode, path: section.path("address"))
        var listener = ListenerConfig(name: name, address: address)
        if let servicesNode = section.node("services") {
            listener.services = try services(servicesNode, path: section.path("services"))
        }
        try readPermissions(section, address: address, into: &listener.unixPermissions)
        try readSecurity(section, address: address, into: &listener)
        return listener
    }

    private static func services(_ node: YAMLNode, path: String) throws(ConfigError) -> Set<ServiceKind> {
        let expected = "a non-empty sequence of policy and socketmap"
        guard case .sequence(let items) = node.content, !items.isEmpty else {
            throw invalid(node, path, expected: expected)
        }
        var services: Set<ServiceKind> = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard let text = item.scalarText, let service = ServiceKind(rawValue: text) else {
                throw invalid(item, itemPath, expected: "policy or socketmap")
            }
            if services.contains(service) { throw invalid(item, itemPath, expected: "each service once") }
            services.insert(service)
        }
        return services
    }

    /// Reads owner, group and mode, which only a UNIX socket listener may set.
    private static func readPermissions(
        _ section: ConfigMapping, address: ListenAddress, into permissions: inout UnixSocketPermissions
    ) throws(ConfigError) {
        if case .tcp = address {
            for key in ["owner", "group", "mode"] {
                if let node = section.node(key) {
                    throw invalid(node, section.path(key), expected: "no \(key) on a tcp: listener (it applies to unix: sockets)")
                }
            }
            return
        }
        for (key, keyPath) in [("owner", \UnixSocketPermissions.owner), ("group", \UnixSocketPermissions.group)] {
            guard let node = section.node(key) else { continue }
            let text = try string(node, path: section.path(key))
            if text.contains(where: { $0 == ":" || $0 == " " }) {
                throw invalid(node, section.path(key), expected: "a user or group name or number")
            }
            permissions[keyPath: keyPath] = text
        }
        if let node = section.node("mode") {
            permissions.mode = try socketMode(node, path: section.path("mode"))
        }
    }

    /// Parses a mode as octal digits (`"0660"`, `0660` or `660`), at most 0777.
    private static func socketMode(_ node: YAMLNode, path: String) throws(ConfigError) -> UInt16 {
        guard let text = node.scalarText, (1...4).contains(text.count), text.allSatisfy({ ("0"..."7").contains($0) }),
            let mode = UInt16(text, radix: 8), mode <= 0o777
        else {
            throw invalid(node, path, expected: "an octal mode from 0000 to 0777, such as \"0660\"")
        }
        return mode
    }

    /// Parses `tcp:HOST:PORT`, `tcp:[IPv6]:PORT` or `unix:/absolute/path`.
    static func listenAddress(_ node: YAMLNode, path: String) throws(ConfigError) -> ListenAddress {
        let expected = "tcp:HOST:PORT, tcp:[IPv6]:PORT or unix:/absolute/path"
        let text = try string(node, path: path)
        if text.hasPrefix("unix:") {
            let socketPath = String(text.dropFirst(5))
            // sun_path has room for 108 bytes on Linux, the terminating NUL included.
            guard socketPath.hasPrefix("/"), socketPath.utf8.count <= 107 else {
                throw invalid(node, path, expected: "unix: and an absolute path of at most 107 bytes")
            }
            return .unix(path: socketPath)
        }
        guard text.hasPrefix("tcp:"), let (host, portText) = splitHostPort(text.dropFirst(4)) else {
            throw invalid(node, path, expected: expected)
        }
        guard portText.allSatisfy({ ("0"..."9").contains($0) }), let port = UInt16(portText), port > 0 else {
            throw invalid(node, path, expected: "a port from 1 to 65535 in " + expected)
        }
        return .tcp(host: host, port: port)
    }

    /// Splits `HOST:PORT` or `[IPv6]:PORT`; nil when the host is empty, has characters a host or
    /// address cannot have, or is an IPv6 address without brackets.
    private static func splitHostPort(_ text: Substring) -> (host: String, port: Substring)? {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            let host = text[text.index(after: text.startIndex)..<close]
            let port = text[text.index(close, offsetBy: 2)...]
            // An IPv6 address, with an optional zone such as %eth0 after it.
            let address = host.prefix { $0 != "%" }
            let zone = host.dropFirst(address.count)
            let valid = address.contains(":") && address.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
                && (zone.isEmpty || zone.dropFirst().allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
                && zone != "%"
            return valid ? (String(host), port) : nil
        }
        guard let colon = text.lastIndex(of: ":") else { return nil }
        let host = text[..<colon]
        let valid = !host.isEmpty && host.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "." || $0 == "-" }
        return valid ? (String(host), text[text.index(after: colon)...]) : nil
    }
}
