// Socketmap replies and the one place their wire form is built: one
// netstring per reply. Postfix compares the first word case-sensitively.
// It reads some replies that look well formed as "not found": `OK ` with
// empty data draws a warning and counts as not found (3.7.11), and a bare
// `OK` is not found in 3.7 but "" from the May 2026 patch releases
// (3.8.16, 3.9.10, 3.10.9, 3.11.2) on.
// So `.ok` needs data, and a malformed reply stops the process.

/// The reply the socketmap service sends Postfix for one key.
public enum SocketmapReply: Sendable, Equatable {
    /// The key is found; the data must not be empty.
    case ok(String)
    /// The key is not in the map.
    case notFound
    /// A temporary failure; Postfix defers the mail.
    case temp(String)
    /// A timeout; Postfix treats it as a temporary failure.
    case timeout(String)
    /// A permanent failure of the map (Postfix reports a configuration error).
    case perm(String)

    /// Largest reply payload Postfix reads (its `socketmap_max_reply_size` default), in bytes.
    public static let maxPayloadSize = 100_000

    /// The netstring: `<length>:OK data,`, `9:NOTFOUND ,`, `<length>:TEMP reason,`,
    /// `<length>:TIMEOUT reason,` or `<length>:PERM reason,`.
    ///
    /// Stops the process when `.ok` has empty data, when data or reason contain a NUL byte
    /// (Postfix would cut the string there), or when the payload exceeds ``maxPayloadSize``.
    public var encoded: [UInt8] {
        let payload: String
        switch self {
        case .ok(let data):
            precondition(!data.isEmpty, "a socketmap OK reply needs data: Postfix reads `OK ` as not found")
            payload = "OK " + data
        case .notFound:
            payload = "NOTFOUND "
        case .temp(let reason):
            payload = "TEMP " + reason
        case .timeout(let reason):
            payload = "TIMEOUT " + reason
        case .perm(let reason):
            payload = "PERM " + reason
        }

        let size = payload.utf8.count
        precondition(size <= Self.maxPayloadSize, "socketmap reply of \(size) bytes exceeds Postfix's 100000-byte limit")
        precondition(!payload.utf8.contains(0), "a socketmap reply must not contain a NUL byte")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size + 8)
        bytes.append(contentsOf: String(size).utf8)
        bytes.append(UInt8(ascii: ":"))
        bytes.append(contentsOf: payload.utf8)
        bytes.append(UInt8(ascii: ","))
        return bytes
    }
}
