// Errors of the configuration loader. Each one names the key path (for
// example `identity.keycloak.base_url`), the line, and for a bad value the
// value found and the form expected. Values of secret keys never appear.

/// A configuration file that cannot be read, parsed or accepted.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The kind of fault, with the values that describe it.
    public enum Problem: Equatable, Sendable {
        /// The file could not be opened or read; `reason` is the system's message.
        case unreadableFile(reason: String)
        /// The document is larger than `limit` bytes.
        case documentTooLarge(limit: Int)
        /// libyaml rejected the text.
        case syntax(message: String)
        /// Sequences and mappings are nested deeper than `limit`.
        case nestingTooDeep(limit: Int)
        /// An anchor (`&name`) or alias (`*name`), which the loader does not accept.
        case anchorOrAlias
        /// An explicit tag such as `!!str`, which the loader does not accept.
        case tag(String)
        /// The file contains more than one YAML document.
        case multipleDocuments
        /// A mapping names the same key twice.
        case duplicateKey
        /// A key that the configuration does not have; `allowed` lists the keys valid at that place.
        case unknownKey(allowed: [String])
        /// A required key is absent.
        case missingKey
        /// A value of the wrong type, form or range.
        case invalidValue(found: String, expected: String)
    }

    public var problem: Problem
    /// The key path, such as `listeners[0].address`; empty for the document as a whole.
    public var keyPath: String
    /// The 1-based line in the YAML text, when known.
    public var line: Int?
    /// The file path, set by `ConfigLoader.load(path:)`.
    public var file: String?

    public init(_ problem: Problem, keyPath: String = "", line: Int? = nil, file: String? = nil) {
        self.problem = problem
        self.keyPath = keyPath
        self.line = line
        self.file = file
    }

    /// One line such as `mailcloak.yaml:12: server.io_timeout: invalid value "x", expected a duration`.
    public var description: String {
        var location = file ?? ""
        if let line {
            location += location.isEmpty ? "line \(line)" : ":\(line)"
        }
        var text = location.isEmpty ? "" : location + ": "
        if !keyPath.isEmpty {
            text += keyPath + ": "
        }
        return text + problemText
    }

    private var problemText: String {
        switch problem {
        case .unreadableFile(let reason): "cannot read the configuration file: \(reason)"
        case .documentTooLarge(let limit): "the configuration is larger than \(limit) bytes"
        case .syntax(let message): "invalid YAML: \(message)"
        case .nestingTooDeep(let limit): "nesting deeper than \(limit) levels"
        case .anchorOrAlias: "anchors and aliases are not supported, write the value out"
        case .tag(let tag): "YAML tag \(tag) is not supported, remove it"
        case .multipleDocuments: "more than one YAML document, expected one"
        case .duplicateKey: "duplicate key"
        case .unknownKey(let allowed): "unknown key, expected one of: " + allowed.joined(separator: ", ")
        case .missingKey: "missing key"
        case .invalidValue(let found, let expected): "invalid value \(found), expected \(expected)"
        }
    }
}
