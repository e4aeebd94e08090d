// The request line and headers of one HTTP/1.0 or HTTP/1.1 request, as the
// metrics endpoint reads them. The head may be at most 8 KiB. A longer head,
// a malformed request line or another HTTP version is an error. Bodies are
// not read: the endpoint serves GET only and closes each connection.

/// The request line and headers of an HTTP request.
public struct HTTPRequestHead: Sendable, Equatable {
    /// Largest head accepted, request line and headers together, in bytes.
    public static let maxSize = 8192

    public var method: String
    /// The path without the query string.
    public var path: String
    /// `HTTP/1.0` or `HTTP/1.1`.
    public var version: String
    /// Header names in lower case, with their values trimmed.
    public var headers: [(name: String, value: String)]

    public static func == (lhs: HTTPRequestHead, rhs: HTTPRequestHead) -> Bool {
        lhs.method == rhs.method && lhs.path == rhs.path && lhs.version == rhs.version
            && lhs.headers.elementsEqual(rhs.headers) { $0.name == $1.name && $0.value == $1.value }
    }

    /// The outcome of parsing the bytes received so far.
    public enum ParseResult: Sendable, Equatable {
        /// The head is not complete yet.
        case needMore
        case complete(HTTPRequestHead)
        case invalid(HTTPRequestError)
    }

    /// Parses `bytes` if they hold a whole head, ended by an empty line (CRLF CRLF, or LF LF).
    public static func parse(_ bytes: [UInt8]) -> ParseResult {
        guard let end = headEnd(bytes) else {
            return bytes.count > maxSize ? .invalid(.headTooLarge) : .needMore
        }
        guard end <= maxSize else { return .invalid(.headTooLarge) }
        // Split bytes, not a String: Swift treats CR LF as one Character, so "\n" would not match it.
        var lines: [Substring] = []
        for rawLine in bytes[..<end].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            let line = rawLine.last == UInt8(ascii: "\r") ? rawLine.dropLast() : rawLine
            guard let text = String(validating: line, as: UTF8.self) else { return .invalid(.malformedRequestLine) }
            lines.append(Substring(text))
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let requestLine = lines.first else { return .invalid(.malformedRequestLine) }

        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[1].hasPrefix("/") else {
            return .invalid(.malformedRequestLine)
        }
        let version = String(parts[2])
        guard version == "HTTP/1.0" || version == "HTTP/1.1" else { return .invalid(.unsupportedVersion) }

        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                return .invalid(.malformedHeader)
            }
            let name = line[..<colon]
            guard !name.contains(where: { $0 == " " || $0 == "\t" }) else { return .invalid(.malformedHeader) }
            let value = line[line.index(after: colon)...].trimmingSpaces()
            headers.append((name.lowercased(), value))
        }
        let target = parts[1]
        let path = target.firstIndex(of: "?").map { String(target[..<$0]) } ?? String(target)
        return .complete(HTTPRequestHead(method: String(parts[0]), path: path, version: version, headers: headers))
    }

    /// Returns the index just past the empty line that ends the head, or nil when it has not arrived.
    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        let newline = UInt8(ascii: "\n")
        var index = 0
        while index < bytes.count {
            if bytes[index] == newline {
                if index + 1 < bytes.count, bytes[index + 1] == newline { return index + 2 }
                if index + 2 < bytes.count, bytes[index + 1] == UInt8(ascii: "\r"), bytes[index + 2] == newline {
                    return index + 3
                }
            }
            index += 1
        }
        return nil
    }
}

/// The reason a request head was rejected, with the 4xx or 5xx status it maps to.
public enum HTTPRequestError: Error, Sendable, Equatable {
    case headTooLarge
    case malformedRequestLine
    case malformedHeader
    case unsupportedVersion

    /// The status code of the reply.
    public var status: Int {
        switch self {
        case .headTooLarge: 431
        case .malformedRequestLine, .malformedHeader: 400
        case .unsupportedVersion: 505
        }
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
