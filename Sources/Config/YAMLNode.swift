// The YAML node tree the configuration loader reads: scalars, sequences and
// mappings, each with the line where it starts. Values stay text; the
// loader decides what each key's text means.

/// One node of a parsed YAML document.
struct YAMLNode: Equatable, Sendable {
    enum Content: Equatable, Sendable {
        /// A scalar's text. `isPlain` is false for quoted and block scalars, which are never null.
        case scalar(String, isPlain: Bool)
        case sequence([YAMLNode])
        case mapping([YAMLEntry])
    }

    var content: Content
    /// The 1-based line where the node starts.
    var line: Int

    /// Whether the node is YAML's null: a plain empty scalar, `~` or `null` (YAML 1.2 core schema).
    var isNull: Bool {
        guard case .scalar(let text, true) = content else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(text)
    }

    /// The text of a scalar that is not null; nil for null, sequences and mappings.
    var scalarText: String? {
        guard case .scalar(let text, _) = content, !isNull else { return nil }
        return text
    }
}

/// One key and its value in a mapping.
struct YAMLEntry: Equatable, Sendable {
    var key: String
    /// The 1-based line of the key.
    var keyLine: Int
    var value: YAMLNode
}
