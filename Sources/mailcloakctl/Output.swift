// Writing mailcloakctl's output: plain lines, aligned tables for people,
// and compact JSON (one array per line, keys sorted) for scripts.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

enum Output {
    /// Writes `text` to standard output.
    static func out(_ text: String) {
        write(fileDescriptor: 1, text)
    }

    /// Writes `text` to standard error.
    static func err(_ text: String) {
        write(fileDescriptor: 2, text)
    }

    private static func write(fileDescriptor: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }
                offset += written
            }
        }
    }

    /// Formats rows under a header with columns separated by two spaces. The last column is not padded.
    static func table(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        var widths = [Int](repeating: 0, count: header.count)
        for row in all {
            for (column, cell) in row.enumerated() { widths[column] = max(widths[column], cell.count) }
        }
        var text = ""
        for row in all {
            var line = ""
            for (column, cell) in row.enumerated() {
                let isLast = column == row.count - 1
                line += isLast ? cell : cell + String(repeating: " ", count: widths[column] - cell.count + 2)
            }
            text += line + "\n"
        }
        return text
    }

    /// Encodes `value` as one line of JSON with sorted keys.
    static func json<T: Encodable>(_ value: T) throws(CLIError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            let data = try encoder.encode(value)
            return String(decoding: data, as: UTF8.self) + "\n"
        } catch {
            throw .runtime("cannot encode JSON output: \(error)")
        }
    }

    static func status(_ enabled: Bool) -> String {
        enabled ? "enabled" : "disabled"
    }
}
