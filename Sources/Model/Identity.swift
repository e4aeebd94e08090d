// The resolver's view of the identity provider: keyed lookups whose answers
// may already be cached in memory (checked without blocking, on a reactor
// thread) or need a blocking fetch (run on a worker thread).

/// What is looked up in the identity provider. Values are folded to lower case.
public enum IdentityKey: Hashable, Sendable, CustomStringConvertible {
    /// Users whose primary email address equals this address.
    case email(String)
    /// The user with this username.
    case username(String)

    public var description: String {
        switch self {
        case .email(let value): "email:\(value)"
        case .username(let value): "username:\(value)"
        }
    }
}

/// An enabled identity-provider user.
public struct IdentityUser: Sendable, Hashable {
    /// Username, folded to lower case.
    public var username: String
    /// Primary email address, canonical form; nil when the user has none
    /// (or, when so configured, has one that is not verified).
    public var email: MailAddress?

    public init(username: String, email: MailAddress?) {
        self.username = username.lowercased()
        self.email = email
    }
}

/// The answer of one lookup: an enabled user, or none.
public enum IdentityAnswer: Sendable, Equatable {
    case found(IdentityUser)
    case notFound
}

/// A lookup that failed. Never cached, never turned into a rejection.
public enum IdentityLookupError: Error, Sendable, Equatable {
    /// The provider could not be reached, timed out, or answered with an error.
    case unavailable(reason: String)
    /// No worker was free and the lookup queue was full.
    case overloaded
}

/// Looks users up, through a cache, in the identity provider.
public protocol IdentityDirectory: AnyObject, Sendable {
    /// Returns the cached answer for `key`, or nil on a miss. Never blocks.
    func cachedAnswer(for key: IdentityKey) -> IdentityAnswer?

    /// Returns the answer for `key` from the cache or the provider, caching
    /// what the provider returns. Blocks: call it on a worker thread only.
    func lookup(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer
}
