// Finds the Redis primary through Redis Sentinel: each sentinel in turn is
// asked for the monitored primary's address (SENTINEL
// get-master-addr-by-name), and the server found there must report the
// master role, so that a stale answer during a failover is not used.
//
// NOTE: Sentinels are contacted without a password, so sentinels that
// require AUTH (requirepass in sentinel.conf) are not supported.

enum RedisSentinel {
    /// Returns the primary's address from the first sentinel that monitors it.
    /// - Throws: `.connectFailed` naming the last sentinel's error.
    static func primary(of endpoint: RedisEndpoint) throws(RedisError) -> RedisAddress {
        var sentinelSettings = endpoint
        sentinelSettings.password = nil
        sentinelSettings.database = 0
        var lastError = "no sentinel configured"
        for sentinel in endpoint.sentinels {
            do {
                let connection = try RedisConnection(address: sentinel, endpoint: sentinelSettings)
                let reply = try connection.command(["SENTINEL", "get-master-addr-by-name", endpoint.sentinelMaster])
                if case .array(let parts) = reply, parts.count == 2, let host = parts[0].text,
                    let portText = parts[1].text, let port = Int(portText)
                {
                    return RedisAddress(host: host, port: port)
                }
                lastError = "sentinel \(sentinel.host):\(sentinel.port) does not know \(endpoint.sentinelMaster)"
            } catch {
                lastError = "sentinel \(sentinel.host):\(sentinel.port): \(error)"
            }
        }
        throw .connectFailed(reason: lastError)
    }

    /// Checks that the server at `address` reports the master role.
    static func requirePrimaryRole(_ connection: RedisConnection, address: RedisAddress) throws(RedisError) {
        let reply = try connection.command(["ROLE"])
        guard case .array(let parts) = reply, parts.first?.text == "master" else {
            throw .connectFailed(reason: "\(address.host):\(address.port) named by the sentinels is not a primary")
        }
    }
}
