// Turns YAML text into a YAMLNode tree with libyaml's event parser. The
// input is bounded in size and nesting depth, and anchors, aliases and
// explicit tags are rejected, so an alias bomb ("billion laughs") cannot
// expand and no value changes type behind the loader's back.

import CYAML

/// Parses one YAML document into a node tree.
enum YAMLDocument {
    /// Largest document accepted, in bytes.
    static let maxSize = 1 << 20
    /// Deepest nesting of sequences and mappings accepted.
    static let maxDepth = 32

    /// Parses `text`, or returns nil when it contains no document (empty or only comments).
    static func parse(_ text: String) throws(ConfigError) -> YAMLNode? {
        let bytes = Array(text.utf8)
        if bytes.count > maxSize { throw ConfigError(.documentTooLarge(limit: maxSize)) }
        if bytes.isEmpty { return nil }

        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw ConfigError(.syntax(message: "libyaml could not allocate a parser"))
        }
        defer { yaml_parser_delete(&parser) }

        let result: Result<YAMLNode?, ConfigError> = bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var builder = TreeBuilder()
            return Result { () throws(ConfigError) in try builder.run(&parser) }
        }
        return try result.get()
    }
}

/// Builds the tree from parser events, one container frame per open sequence or mapping.
private struct TreeBuilder {
    private struct Frame {
        var line: Int
        var path: String
        var isMapping: Bool
        var items: [YAMLNode] = []
        var entries: [YAMLEntry] = []
        var pendingKey: (text: String, line: Int)?
    }

    private var stack: [Frame] = []
    private var root: YAMLNode?
    private var documents = 0

    mutating func run(_ parser: inout yaml_parser_t) throws(ConfigError) -> YAMLNode? {
        var event = yaml_event_t()
        while true {
            guard yaml_parser_parse(&parser, &event) == 1 else { throw Self.syntaxError(parser) }
            defer { yaml_event_delete(&event) }
            if event.type == YAML_STREAM_END_EVENT { return root }
            try handle(event)
        }
    }

    private mutating func handle(_ event: yaml_event_t) throws(ConfigError) {
        let line = Int(event.start_mark.line) + 1
        switch event.type {
        case YAML_DOCUMENT_START_EVENT:
            documents += 1
            if documents > 1 { throw ConfigError(.multipleDocuments, line: line) }
        case YAML_ALIAS_EVENT:
            throw ConfigError(.anchorOrAlias, keyPath: childPath(), line: line)
        case YAML_SCALAR_EVENT:
            let scalar = event.data.scalar
            try checkAnchorAndTag(anchor: scalar.anchor, tag: scalar.tag, line: line)
            let text = Self.string(scalar.value, length: scalar.length)
            let isPlain = scalar.style == YAML_PLAIN_SCALAR_STYLE
            try add(YAMLNode(content: .scalar(text, isPlain: isPlain), line: line))
        case YAML_SEQUENCE_START_EVENT:
            try checkAnchorAndTag(anchor: event.data.sequence_start.anchor, tag: event.data.sequence_start.tag, line: line)
            try open(isMapping: false, line: line)
        case YAML_MAPPING_START_EVENT:
            try checkAnchorAndTag(anchor: event.data.mapping_start.anchor, tag: event.data.mapping_start.tag, line: line)
            try open(isMapping: true, line: line)
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            try close()
        default:
            break
        }
    }

    private mutating func open(isMapping: Bool, line: Int) throws(ConfigError) {
        let path = childPath()
        if stack.count >= YAMLDocument.maxDepth {
            throw ConfigError(.nestingTooDeep(limit: YAMLDocument.maxDepth), keyPath: path, line: line)
        }
        if let top = stack.last, top.isMapping, top.pendingKey == nil {
            throw ConfigError(.invalidValue(found: "a collection as a key", expected: "a scalar key"), keyPath: top.path, line: line)
        }
        stack.append(Frame(line: line, path: path, isMapping: isMapping))
    }

    private mutating func close() throws(ConfigError) {
        let frame = stack.removeLast()
        let content: YAMLNode.Content = frame.isMapping ? .mapping(frame.entries) : .sequence(frame.items)
        try add(YAMLNode(content: content, line: frame.line))
    }

    /// Attaches a finished node to the open container, or makes it the root.
    private mutating func add(_ node: YAMLNode) throws(ConfigError) {
        guard var top = stack.popLast() else {
            root = node
            return
        }
        defer { stack.append(top) }

        if !top.isMapping {
            top.items.append(node)
        } else if let key = top.pendingKey {
            top.entries.append(YAMLEntry(key: key.text, keyLine: key.line, value: node))
            top.pendingKey = nil
        } else {
            guard case .scalar(let text, _) = node.content else { return }
            if top.entries.contains(where: { $0.key == text }) {
                throw ConfigError(.duplicateKey, keyPath: Self.join(top.path, text), line: node.line)
            }
            top.pendingKey = (text, node.line)
        }
    }

    /// Returns the key path of the next node to be added.
    private func childPath() -> String {
        guard let top = stack.last else { return "" }
        if !top.isMapping { return "\(top.path)[\(top.items.count)]" }
        return Self.join(top.path, top.pendingKey?.text ?? "")
    }

    private func checkAnchorAndTag(
        anchor: UnsafeMutablePointer<yaml_char_t>?, tag: UnsafeMutablePointer<yaml_char_t>?, line: Int
    ) throws(ConfigError) {
        if anchor != nil { throw ConfigError(.anchorOrAlias, keyPath: childPath(), line: line) }
        if let tag { throw ConfigError(.tag(String(cString: tag)), keyPath: childPath(), line: line) }
    }

    static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : path + "." + key
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?, length: Int) -> String {
        guard let pointer else { return "" }
        return String(decoding: UnsafeBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    private static func syntaxError(_ parser: yaml_parser_t) -> ConfigError {
        var message = parser.problem.map { String(cString: $0) } ?? "unknown error"
        if let context = parser.context {
            message += " (\(String(cString: context)))"
        }
        return ConfigError(.syntax(message: message), line: Int(parser.problem_mark.line) + 1)
    }
}
