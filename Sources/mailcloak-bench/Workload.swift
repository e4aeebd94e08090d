// The requests to send and the replies to expect, read from text files and
// turned into wire bytes once, before the run.

#if canImport(Glibc)
import Glibc
#endif

/// Requests in wire form, each with its expected reply when an expect file was given.
struct Workload: Sendable {
    var requests: [[UInt8]]
    /// One per request, in the form ReplyReader.replyText produces, trailing spaces removed.
    var expected: [[UInt8]]?

    /// Largest request file read, in bytes.
    static let maxFileSize = 64 << 20

    static func load(_ options: BenchOptions) -> Result<Workload, BenchUsageError> {
        let requestText: String
        switch readFile(options.requestsFile) {
        case .success(let text): requestText = text
        case .failure(let error): return .failure(error)
        }

        let requests: [[UInt8]]
        switch options.wireProtocol {
        case .policy: requests = policyRequests(requestText)
        case .socketmap: requests = socketmapRequests(requestText)
        }
        if requests.isEmpty {
            return .failure(BenchUsageError(message: "\(options.requestsFile) contains no request"))
        }

        guard let expectFile = options.expectFile else { return .success(Workload(requests: requests, expected: nil)) }
        let expected: [[UInt8]]
        switch readFile(expectFile) {
        case .success(let text): expected = contentLines(text).map { Array(trimTrailingSpaces($0).utf8) }
        case .failure(let error): return .failure(error)
        }
        if expected.count != requests.count {
            return .failure(BenchUsageError(message:
                "\(expectFile) has \(expected.count) replies for \(requests.count) requests, expected one per request"))
        }
        return .success(Workload(requests: requests, expected: expected))
    }

    /// Splits blocks of `name=value` lines separated by blank lines; each becomes the lines and one blank line.
    static func policyRequests(_ text: String) -> [[UInt8]] {
        var requests: [[UInt8]] = []
        var current: [UInt8] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("#") { continue }
            if line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) {
                if !current.isEmpty {
                    requests.append(current + [0x0A])
                    current = []
                }
                continue
            }
            current += Array(line.utf8) + [0x0A]
        }
        if !current.isEmpty { requests.append(current + [0x0A]) }
        return requests
    }

    /// Encodes each `name key` line as a netstring.
    static func socketmapRequests(_ text: String) -> [[UInt8]] {
        contentLines(text).map { line in
            let payload = Array(line.utf8)
            return Array("\(payload.count):".utf8) + payload + [UInt8(ascii: ",")]
        }
    }

    /// Lines that are neither empty nor comments.
    private static func contentLines(_ text: String) -> [Substring] {
        text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.allSatisfy { $0 == " " || $0 == "\r" } }
    }

    private static func trimTrailingSpaces(_ line: Substring) -> Substring {
        var trimmed = line
        while trimmed.last == " " || trimmed.last == "\r" { trimmed = trimmed.dropLast() }
        return trimmed
    }

    private static func readFile(_ path: String) -> Result<String, BenchUsageError> {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            return .failure(BenchUsageError(message: "cannot open \(path): \(String(cString: strerror(errno)))"))
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while bytes.count <= maxFileSize {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 {
                return .failure(BenchUsageError(message: "cannot read \(path): \(String(cString: strerror(errno)))"))
            }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        if bytes.count > maxFileSize {
            return .failure(BenchUsageError(message: "\(path) is larger than \(maxFileSize) bytes"))
        }
        return .success(String(decoding: bytes, as: UTF8.self))
    }
}
