// A libpq connection string or URI, parsed by libpq itself (PQconninfoParse)
// so that every form libpq accepts works. Used for messages that name the
// server without the password, and to point a URL at another database.
import CLibPQ

/// The parsed parameters of a connection string. The password stays inside;
/// `target` and `redact(_:)` are what error messages use.
package struct ConnectionInfo: Sendable {
    /// The original string, passed to libpq unchanged.
    package let conninfo: String
    /// Keyword and value of every parameter that is set, in libpq's order.
    package let parameters: [(keyword: String, value: String)]

    /// Parses `conninfo` (`host=... dbname=...` or `postgresql://...`).
    /// - Throws: `StoreError.invalidConnectionString` with libpq's reason.
    package init(_ conninfo: String) throws(StoreError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &errorMessage) else {
            var reason = "out of memory"
            if let errorMessage {
                reason = String(cString: errorMessage).trimmingWhitespace()
                PQfreemem(errorMessage)
            }
            throw .invalidConnectionString(reason: reason)
        }
        defer { PQconninfoFree(options) }

        var parameters: [(keyword: String, value: String)] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val, value.pointee != 0 {
                parameters.append((String(cString: keyword), String(cString: value)))
            }
            option += 1
        }
        self.conninfo = conninfo
        self.parameters = parameters
    }

    /// Returns the value of `keyword`, or nil when it is not set.
    package func value(_ keyword: String) -> String? {
        parameters.last { $0.keyword == keyword }?.value
    }

    /// The server as messages name it: `127.0.0.1:5432 (database mailcloak, user mailcloak)`.
    /// Without a host, libpq uses the UNIX socket in /var/run/postgresql (Debian's build).
    package var target: String {
        let host = value("host") ?? value("hostaddr") ?? "/var/run/postgresql"
        let port = value("port") ?? "5432"
        let location = host.hasPrefix("/") ? "socket \(host)/.s.PGSQL.\(port)" : "\(host):\(port)"
        var details: [String] = []
        if let database = value("dbname") { details.append("database \(database)") }
        if let user = value("user") { details.append("user \(user)") }
        return details.isEmpty ? location : "\(location) (\(details.joined(separator: ", ")))"
    }

    /// Masks the password wherever it appears in `text` (a libpq message, for example).
    package func redact(_ text: String) -> String {
        guard let password = value("password"), password.count >= 3 else { return text }
        return text.replacingAll(password, with: "***")
    }

    /// Returns a keyword/value connection string for the same server and
    /// credentials that connects to `database` instead.
    package func replacingDatabase(with database: String) -> String {
        var pairs = parameters.filter { $0.keyword != "dbname" }
        pairs.append(("dbname", database))
        return pairs.map { "\($0.keyword)=\(Self.quote($0.value))" }.joined(separator: " ")
    }

    /// Quotes a value for a keyword/value connection string.
    static func quote(_ value: String) -> String {
        var quoted = "'"
        for character in value {
            if character == "'" || character == "\\" { quoted.append("\\") }
            quoted.append(character)
        }
        return quoted + "'"
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[first...last])
    }

    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension Substring {
    /// Finds the first occurrence of `target`, without Foundation.
    func range(of target: String) -> Range<Substring.Index>? {
        let needle = Array(target.unicodeScalars)
        guard let firstScalar = needle.first else { return nil }
        let haystack = unicodeScalars
        var index = haystack.startIndex
        while index < haystack.endIndex {
            if haystack[index] == firstScalar {
                var probe = index
                var matched = 0
                while matched < needle.count, probe < haystack.endIndex, haystack[probe] == needle[matched] {
                    matched += 1
                    probe = haystack.index(after: probe)
                }
                if matched == needle.count { return index..<probe }
            }
            index = haystack.index(after: index)
        }
        return nil
    }
}
