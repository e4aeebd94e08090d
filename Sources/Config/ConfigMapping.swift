// Typed reads of YAML values for the loader. Each read names the key path,
// the value found and the form expected when it fails, and hides the value
// of secret keys.

/// A YAML mapping whose keys have been checked against the keys allowed at its path.
struct ConfigMapping {
    let path: String
    let line: Int
    private let entries: [YAMLEntry]

    /// Checks that `node` is a mapping whose keys are all in `allowed`.
    init(_ node: YAMLNode, path: String, allowed: [String]) throws(ConfigError) {
        guard case .mapping(let entries) = node.content else {
            throw ConfigError(.invalidValue(found: describe(node), expected: "a mapping"), keyPath: path, line: node.line)
        }
        for entry in entries where !allowed.contains(entry.key) {
            throw ConfigError(.unknownKey(allowed: allowed), keyPath: keyPath(path, entry.key), line: entry.keyLine)
        }
        self.path = path
        self.line = node.line
        self.entries = entries
    }

    /// Returns the value of `key`, or nil when the key is absent.
    func node(_ key: String) -> YAMLNode? {
        entries.first { $0.key == key }?.value
    }

    /// Returns the value of `key`, or throws `missingKey` when the key is absent.
    func required(_ key: String) throws(ConfigError) -> YAMLNode {
        guard let value = node(key) else { throw ConfigError(.missingKey, keyPath: path(key), line: line) }
        return value
    }

    func path(_ key: String) -> String { keyPath(path, key) }

    /// Reads `key` as an integer in `range` into `value`, when present.
    func readInt(_ key: String, into value: inout Int, range: ClosedRange<Int>) throws(ConfigError) {
        guard let node = node(key) else { return }
        value = try int(node, path: path(key), range: range)
    }

    /// Reads `key` as a duration in `range` into `value`, when present.
    func readDuration(_ key: String, into value: inout Seconds, range: ClosedRange<Seconds>) throws(ConfigError) {
        guard let node = node(key) else { return }
        value = try duration(node, path: path(key), range: range)
    }

    /// Reads `key` as a boolean into `value`, when present.
    func readBool(_ key: String, into value: inout Bool) throws(ConfigError) {
        guard let node = node(key) else { return }
        value = try bool(node, path: path(key))
    }

    /// Reads `key` as a string into `value`, when present. A null value is an error.
    func readString(
        _ key: String, into value: inout String, allowEmpty: Bool = false, secret: Bool = false
    ) throws(ConfigError) {
        guard let node = node(key) else { return }
        value = try string(node, path: path(key), allowEmpty: allowEmpty, secret: secret)
    }

    /// Reads `key` as a string into `value`, when present. A null value sets nil.
    func readOptionalString(_ key: String, into value: inout String?) throws(ConfigError) {
        guard let node = node(key) else { return }
        value = node.isNull ? nil : try string(node, path: path(key))
    }

    /// Reads `key` as the raw value of one of `choices` into `value`, when present.
    func readChoice<T: RawRepresentable>(
        _ key: String, into value: inout T, choices: [T]
    ) throws(ConfigError) where T.RawValue == String {
        guard let node = node(key) else { return }
        let text = try string(node, path: path(key))
        guard let choice = choices.first(where: { $0.rawValue == text }) else {
            let names = choices.map(\.rawValue).joined(separator: " or ")
            throw invalid(node, path(key), expected: names)
        }
        value = choice
    }
}

func keyPath(_ parent: String, _ key: String) -> String {
    parent.isEmpty ? key : parent + "." + key
}

/// Describes a node for an error message: its text in quotes (cut at 80 characters), or its kind.
func describe(_ node: YAMLNode, secret: Bool = false) -> String {
    if node.isNull { return "null" }
    switch node.content {
    case .sequence: return "a sequence"
    case .mapping: return "a mapping"
    case .scalar(let text, _):
        if secret { return "(secret value hidden)" }
        var shown = ""
        for scalar in text.unicodeScalars.prefix(80) {
            shown += scalar.value < 0x20 || scalar.value == 0x7F ? scalar.escaped(asASCII: true) : String(scalar)
        }
        return "\"" + shown + (text.unicodeScalars.count > 80 ? "...\"" : "\"")
    }
}

func invalid(_ node: YAMLNode, _ path: String, expected: String, secret: Bool = false) -> ConfigError {
    ConfigError(.invalidValue(found: describe(node, secret: secret), expected: expected), keyPath: path, line: node.line)
}

func string(_ node: YAMLNode, path: String, allowEmpty: Bool = false, secret: Bool = false) throws(ConfigError) -> String {
    guard let text = node.scalarText else { throw invalid(node, path, expected: "a string", secret: secret) }
    if text.isEmpty && !allowEmpty { throw invalid(node, path, expected: "a non-empty string", secret: secret) }
    if text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
        throw invalid(node, path, expected: "a string without control characters", secret: secret)
    }
    return text
}

/// Parses a decimal integer; `_` may separate digits (`100_000`).
func int(_ node: YAMLNode, path: String, range: ClosedRange<Int>) throws(ConfigError) -> Int {
    let expected = "an integer from \(range.lowerBound) to \(range.upperBound)"
    guard let text = node.scalarText else { throw invalid(node, path, expected: expected) }
    let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
    let wellFormed = !digits.isEmpty && digits.first != "_" && digits.last != "_"
        && digits.allSatisfy { $0 == "_" || ("0"..."9").contains($0) }
    guard wellFormed, let value = Int(String(text.filter { $0 != "_" })), range.contains(value) else {
        throw invalid(node, path, expected: expected)
    }
    return value
}

func bool(_ node: YAMLNode, path: String) throws(ConfigError) -> Bool {
    switch node.scalarText {
    case "true", "True", "TRUE": return true
    case "false", "False", "FALSE": return false
    default: throw invalid(node, path, expected: "true or false")
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h` or a bare number of seconds; decimals are allowed (`1.5s`).
func duration(_ node: YAMLNode, path: String, range: ClosedRange<Seconds>) throws(ConfigError) -> Seconds {
    let expected = "a duration from \(formatDuration(range.lowerBound)) to \(formatDuration(range.upperBound))"
        + " such as 250ms, 30s, 5m, 1h or a number of seconds"
    guard let text = node.scalarText, let seconds = parseDuration(text), range.contains(seconds) else {
        throw invalid(node, path, expected: expected)
    }
    return seconds
}

/// Parses a duration's text; nil when it is not one.
package func parseDuration(_ text: String) -> Seconds? {
    let units: [(suffix: String, scale: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    var number = Substring(text)
    var scale = 1.0
    if let unit = units.first(where: { text.hasSuffix($0.suffix) }) {
        number = text.dropLast(unit.suffix.count)
        scale = unit.scale
    }
    let dots = number.filter { $0 == "." }.count
    guard !number.isEmpty, dots <= 1, number.first != ".", number.last != ".",
        number.allSatisfy({ $0 == "." || ("0"..."9").contains($0) }),
        let value = Double(number)
    else { return nil }
    return value * scale
}

/// Writes a duration the way the configuration does: `250ms`, `30s`, `5m`, `1h`, or `1.5s`.
func formatDuration(_ seconds: Seconds) -> String {
    if seconds > 0 && seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
    if seconds >= 3600 && seconds.truncatingRemainder(dividingBy: 3600) == 0 { return "\(Int(seconds / 3600))h" }
    if seconds >= 60 && seconds.truncatingRemainder(dividingBy: 60) == 0 { return "\(Int(seconds / 60))m" }
    if seconds == seconds.rounded() { return "\(Int(seconds))s" }
    return "\(seconds)s"
}
