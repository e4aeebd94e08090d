// Renders one log event as a key=value line or a JSON object. Values are
// quoted when they contain spaces, quotes, '=' or control bytes, so that a
// hostile address in a request cannot forge a second field or a new line.

/// Turns an event into the text of one log line, without the newline. A nil
/// `time` leaves the time field out, for outputs that stamp lines themselves.
package enum LogLineFormatter {
    package static func keyValue(
        level: LogLevel, event: String, metadata: [(LogKey, String)], time: String?
    ) -> String {
        var line = time.map { "time=\($0) " } ?? ""
        line += "level=\(level.name) event=\(quoteIfNeeded(event))"
        for (key, value) in metadata {
            line += " \(key.rawValue)=\(quoteIfNeeded(value))"
        }
        return line
    }

    package static func json(
        level: LogLevel, event: String, metadata: [(LogKey, String)], time: String?
    ) -> String {
        var line = "{" + (time.map { "\"time\":\(jsonString($0))," } ?? "")
        line += "\"level\":\(jsonString(level.name)),\"event\":\(jsonString(event))"
        for (key, value) in metadata {
            line += ",\(jsonString(key.rawValue)):\(jsonString(value))"
        }
        return line + "}"
    }

    /// Returns `value` unchanged when it is a plain token, else a double-quoted
    /// string with `"`, `\` and control bytes escaped.
    package static func quoteIfNeeded(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.utf8.contains { byte in
            byte <= 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "=")
                || byte == UInt8(ascii: "\\") || byte == 0x7F
        }
        guard needsQuotes else { return value }
        return "\"" + escaped(value) + "\""
    }

    package static func jsonString(_ value: String) -> String {
        "\"" + escaped(value) + "\""
    }

    private static func escaped(_ value: String) -> String {
        var out = ""
        out.reserveCapacity(value.utf8.count + 2)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}
