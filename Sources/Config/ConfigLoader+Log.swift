// The log section: level, line format, output (stderr or syslog) and the
// share of per-request decision lines logged at info. The defaults come from
// LogConfig in Configuration.swift.
import Log

extension ConfigLoader {
    static let logKeys = [
        "level", "format", "output", "syslog_socket", "syslog_facility", "syslog_ident", "decision_sample_rate",
    ]

    static func logSection(_ node: YAMLNode) throws(ConfigError) -> LogConfig {
        let section = try mapping(node, path: "log")
        var log = LogConfig()
        if let node = section.node("level") {
            let names = LogLevel.allCases.map(\.name)
            guard let text = node.scalarText, let level = LogLevel(name: text) else {
                throw invalid(node, section.path("level"), expected: names.joined(separator: ", "))
            }
            log.level = level.name
        }
        if let node = section.node("format") {
            guard let text = node.scalarText, let format = LogFormat(rawValue: text) else {
                throw invalid(node, section.path("format"), expected: "keyvalue or json")
            }
            log.format = format.rawValue
        }
        try section.readChoice("output", into: &log.output, choices: LogOutput.allCases)
        if let node = section.node("syslog_socket") {
            log.syslogSocket = try syslogSocket(node, path: section.path("syslog_socket"))
        }
        if let node = section.node("syslog_facility") {
            let text = try string(node, path: section.path("syslog_facility"))
            guard let facility = SyslogFacility(rawValue: text) else {
                let names = SyslogFacility.allCases.map(\.rawValue).joined(separator: ", ")
                throw invalid(node, section.path("syslog_facility"), expected: "one of " + names)
            }
            log.syslogFacility = facility.rawValue
        }
        if let node = section.node("syslog_ident") {
            log.syslogIdent = try syslogIdent(node, path: section.path("syslog_ident"))
        }
        try section.readFraction("decision_sample_rate", into: &log.decisionSampleRate, range: 0...1)
        return log
    }
}

/// Checks an absolute path that fits in a UNIX socket address (107 bytes on Linux).
private func syslogSocket(_ node: YAMLNode, path: String) throws(ConfigError) -> String {
    let text = try string(node, path: path)
    guard text.hasPrefix("/"), text.utf8.count <= 107 else {
        throw invalid(node, path, expected: "an absolute path of at most 107 bytes, such as /dev/log")
    }
    return text
}

/// Checks a syslog tag: 1 to 32 printable ASCII characters other than space, `[`, `]` and `:`,
/// because those end the tag in an RFC 3164 message.
private func syslogIdent(_ node: YAMLNode, path: String) throws(ConfigError) -> String {
    let text = try string(node, path: path)
    let excluded: Set<UInt8> = [UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: ":")]
    let valid = text.utf8.count <= 32 && text.utf8.allSatisfy { byte in
        byte > 0x20 && byte < 0x7F && !excluded.contains(byte)
    }
    guard valid else {
        throw invalid(node, path, expected: "1 to 32 printable ASCII characters other than space, [, ] and :")
    }
    return text
}
