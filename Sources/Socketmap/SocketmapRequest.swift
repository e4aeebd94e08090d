// One socketmap query: `<name> <key>` inside a netstring (socketmap_table(5)).
// Postfix sends the map name, one space, then the key, which may itself
// contain spaces (a quoted local part such as `"john doe"@example.com`).

/// A decoded socketmap query.
public struct SocketmapRequest: Sendable, Equatable {
    /// The map name: the last field of `socketmap:inet:host:port:name`.
    public var name: String
    /// The lookup key, unchanged (case and extension as Postfix sent them); may be empty.
    public var key: String

    /// Creates a query from its parts.
    public init(name: String, key: String) {
        self.name = name
        self.key = key
    }

    /// Splits a netstring payload at its first space; nil when there is no space.
    ///
    /// Both parts are decoded as UTF-8, with invalid sequences replaced by U+FFFD.
    public init?(payload: UnsafeRawBufferPointer) {
        guard let space = payload.firstIndex(of: UInt8(ascii: " ")) else { return nil }
        name = String(decoding: UnsafeRawBufferPointer(rebasing: payload[..<space]), as: UTF8.self)
        key = String(decoding: UnsafeRawBufferPointer(rebasing: payload[(space + 1)...]), as: UTF8.self)
    }
}
