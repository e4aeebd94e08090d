// The shared cache of identity answers in Redis (L2), the short lock that
// lets one instance fetch a key for the whole cluster, and flushes.
//
// Keys:   <prefix>:id:v1:<email:a@b | username:u>   value: see IdentityRecord
//         <prefix>:lock:v1:<same>                   value: random owner token
// Channel <prefix>:flush carries "all" or one key per message.
//
// An entry lives in Redis for its fresh TTL plus the stale window. Freshness
// is read from the key's remaining PTTL, so instances whose wall clocks
// differ still agree on it.
import Model

/// One cached answer and how long it stays fresh.
package struct CachedIdentity: Equatable, Sendable {
    package var answer: IdentityAnswer
    /// Milliseconds until the answer goes stale; 0 or less when it already is.
    package var freshForMilliseconds: Int64

    package init(answer: IdentityAnswer, freshForMilliseconds: Int64) {
        self.answer = answer
        self.freshForMilliseconds = freshForMilliseconds
    }

    package var isFresh: Bool { freshForMilliseconds > 0 }
}

/// Encodes answers as `F\t<staleMs>\t<email>\t<username>` or `N\t<staleMs>`,
/// where staleMs is the stale window the writer added to the fresh TTL.
/// The username comes last, so it may contain tabs.
package enum IdentityRecord {
    package static func encode(_ answer: IdentityAnswer, staleMilliseconds: Int64) -> String {
        switch answer {
        case .found(let user):
            return "F\t\(staleMilliseconds)\t\(user.email?.description ?? "")\t\(user.username)"
        case .notFound:
            return "N\t\(staleMilliseconds)"
        }
    }

    /// Decodes a record; nil when it is malformed, so that the caller treats it as a miss.
    package static func decode(_ text: String) -> (answer: IdentityAnswer, staleMilliseconds: Int64)? {
        let fields = text.split(separator: "\t", maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count >= 2, let stale = Int64(fields[1]), stale >= 0 else { return nil }
        switch fields[0] {
        case "N" where fields.count == 2:
            return (.notFound, stale)
        case "F" where fields.count == 4 && !fields[3].isEmpty:
            var email: MailAddress?
            if !fields[2].isEmpty {
                guard let address = MailAddress(String(fields[2])) else { return nil }
                email = address
            }
            return (.found(IdentityUser(username: String(fields[3]), email: email)), stale)
        default:
            return nil
        }
    }
}

/// Identity answers shared by every instance through one Redis database.
/// Thread-safe and blocking: call it on worker threads only.
package final class RedisIdentityCache: Sendable {
    package let pool: RedisPool
    package let keyPrefix: String
    /// The pub/sub channel that carries flushes.
    package var flushChannel: String { keyPrefix + ":flush" }

    private static let unlockScript =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

    package init(pool: RedisPool, keyPrefix: String) {
        self.pool = pool
        self.keyPrefix = keyPrefix
    }

    package func entryKey(_ key: IdentityKey) -> String { "\(keyPrefix):id:v1:\(key.description)" }

    package func lockKey(_ key: IdentityKey) -> String { "\(keyPrefix):lock:v1:\(key.description)" }

    /// Returns the entry for `key`, fresh or stale, or nil on a miss.
    package func get(_ key: IdentityKey) throws(RedisError) -> CachedIdentity? {
        let name = entryKey(key)
        let replies = try pool.withConnection { connection throws(RedisError) in
            try connection.pipeline([["GET", name], ["PTTL", name]])
        }
        switch (replies[0], replies[1]) {
        case (.null, _):
            return nil
        case (.string, .integer(let ttl)):
            guard let text = replies[0].text, let record = IdentityRecord.decode(text) else { return nil }
            // PTTL is -2 when the key expired between the two commands, and -1
            // for a key without expiry, which this cache never writes.
            guard ttl >= 0 else { return nil }
            return CachedIdentity(answer: record.answer, freshForMilliseconds: ttl - record.staleMilliseconds)
        default:
            throw counted(.unexpectedReply("\(replies)"))
        }
    }

    /// Stores `answer` fresh for `freshMilliseconds`, then kept stale for `staleMilliseconds`.
    package func set(
        _ answer: IdentityAnswer, for key: IdentityKey, freshMilliseconds: Int64, staleMilliseconds: Int64
    ) throws(RedisError) {
        let value = IdentityRecord.encode(answer, staleMilliseconds: staleMilliseconds)
        let total = max(1, freshMilliseconds + staleMilliseconds)
        try expectOK(pool.command(["SET", entryKey(key), value, "PX", String(total)]))
    }

    /// Takes the fetch lock for `key` when no other instance holds it.
    /// - Returns: true when this caller now owns the lock.
    package func tryLock(_ key: IdentityKey, owner: String, milliseconds: Int64) throws(RedisError) -> Bool {
        let reply = try pool.command(["SET", lockKey(key), owner, "NX", "PX", String(max(1, milliseconds))])
        switch reply {
        case .status: return true
        case .null: return false
        default: throw counted(.unexpectedReply("\(reply)"))
        }
    }

    /// Releases the fetch lock for `key` if `owner` still holds it.
    package func unlock(_ key: IdentityKey, owner: String) throws(RedisError) {
        _ = try pool.command(["EVAL", Self.unlockScript, "1", lockKey(key), owner])
    }

    /// Deletes the entries for `keys`. Returns how many existed.
    package func delete(_ keys: [IdentityKey]) throws(RedisError) -> Int {
        guard !keys.isEmpty else { return 0 }
        let reply = try pool.command(["DEL"] + keys.map(entryKey))
        guard case .integer(let count) = reply else { throw counted(.unexpectedReply("\(reply)")) }
        return Int(count)
    }

    /// Deletes every identity entry under this prefix, in SCAN batches.
    /// Returns how many were deleted.
    package func deleteAll() throws(RedisError) -> Int {
        var cursor = "0"
        var deleted = 0
        repeat {
            let reply = try pool.command(["SCAN", cursor, "MATCH", "\(keyPrefix):id:v1:*", "COUNT", "1000"])
            guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].text,
                case .array(let names) = parts[1]
            else { throw counted(.unexpectedReply("\(reply)")) }
            let keys = names.compactMap(\.text)
            if !keys.isEmpty {
                if case .integer(let count) = try pool.command(["DEL"] + keys) { deleted += Int(count) }
            }
            cursor = next
        } while cursor != "0"
        return deleted
    }

    /// Publishes a flush message; returns the number of subscribers that got it.
    package func publishFlush(_ message: String) throws(RedisError) -> Int {
        let reply = try pool.command(["PUBLISH", flushChannel, message])
        guard case .integer(let count) = reply else { throw counted(.unexpectedReply("\(reply)")) }
        return Int(count)
    }

    /// Counts and logs, through the pool, an error found in a reply after the call returned, because
    /// callers that fall back to the provider do not report it.
    private func counted(_ error: RedisError) -> RedisError {
        pool.recordErrorReply(error)
        return error
    }

    private func expectOK(_ reply: RedisReply) throws(RedisError) {
        if case .error(let message) = reply { throw counted(.rejected(command: "SET", message: message)) }
    }
}

/// The text of flush messages on the channel: `all`, or one `IdentityKey` description.
package enum FlushMessage {
    /// Drops every entry.
    package static let all = "all"

    /// Parses `email:<address>` or `username:<name>`; nil for anything else.
    package static func key(_ text: String) -> IdentityKey? {
        if text.hasPrefix("email:") { return .email(String(text.dropFirst("email:".count))) }
        if text.hasPrefix("username:") { return .username(String(text.dropFirst("username:".count))) }
        return nil
    }
}
