// Errors of Redis calls. None carries the password or a cached value.

/// A reason a Redis call did not return a usable reply.
package enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The TCP connection could not be made (refused, timed out, DNS).
    case connectFailed(reason: String)
    /// The connection failed while sending or reading, or timed out.
    case io(reason: String)
    /// The server rejected AUTH, SELECT or another setup command with an error reply.
    case rejected(command: String, message: String)
    /// An earlier failure put the pool into backoff; no connection was tried.
    case backingOff
    /// Every pooled connection stayed busy past the command timeout.
    case poolExhausted
    /// The server returned a reply of an unexpected type.
    case unexpectedReply(String)

    package var description: String {
        switch self {
        case .connectFailed(let reason): "connect failed: \(reason)"
        case .io(let reason): "I/O failed: \(reason)"
        case .rejected(let command, let message): "\(command) rejected: \(message)"
        case .backingOff: "waiting before the next reconnect"
        case .poolExhausted: "no free connection"
        case .unexpectedReply(let reply): "unexpected reply \(reply)"
        }
    }
}
