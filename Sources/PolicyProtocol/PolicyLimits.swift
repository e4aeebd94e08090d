// Size limits of one policy request. The decoder checks them as bytes arrive,
// so a peer that never sends a newline costs at most maxLineLength + 1 bytes
// of buffer before the request fails.

/// Size limits that a policy delegation request must fit.
public struct PolicyLimits: Sendable, Equatable {
    /// Longest attribute line in bytes. The `\n` is not counted; a `\r` before it is.
    public var maxLineLength: Int
    /// Largest number of `name=value` lines in one request.
    public var maxAttributes: Int
    /// Largest request in bytes, every newline and the closing blank line included.
    public var maxRequestSize: Int

    /// Creates limits; every value must be positive.
    public init(maxLineLength: Int, maxAttributes: Int, maxRequestSize: Int) {
        precondition(maxLineLength > 0, "maxLineLength must be positive")
        precondition(maxAttributes > 0, "maxAttributes must be positive")
        precondition(maxRequestSize > 0, "maxRequestSize must be positive")
        self.maxLineLength = maxLineLength
        self.maxAttributes = maxAttributes
        self.maxRequestSize = maxRequestSize
    }
}
