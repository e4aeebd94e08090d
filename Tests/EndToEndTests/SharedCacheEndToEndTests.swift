// Three mailcloak daemons that share one Redis cache send each identity
// lookup to Keycloak once for the whole cluster. Policy requests spread
// round-robin over the daemons cost one user query per address, not one per
// daemon. The counts come from keycloak_dev.py's /_dev/stats.
// NOTE: Requests go one at a time, so each address's first lookup has
// finished (and is in Redis) before another daemon looks it up. Concurrent
// misses across daemons go through the Redis fetch lock, which this suite
// does not exercise.

import Foundation
import Testing

/// Policy requests to three daemons that share the database, keycloak_dev.py and redis-server.
@Suite(.serialized, .sharedCacheStack)
struct SharedCacheEndToEnd {
    static let requestCount = 600
    /// Requests on each connection before it is closed and a new one opened.
    static let requestsPerConnection = 10
    static let acceptedReply = "action=DUNNO\n\n"
    static let noSuchUserReply = "action=550 5.1.1 No such user\n\n"
    /// One per daemon: each obtains a token for its start-up check and reuses it while it is valid (300 s).
    static let maxTokens = SharedCacheStack.daemonCount

    @Test func roundRobinQueriesEachUserOnce() throws {
        let stack = try SharedCacheStack.require()
        try stack.keycloak.resetStats()

        let replies = try Self.sendRoundRobin(to: stack.daemons)
        let stats = try stack.keycloak.stats()
        let unexpected = replies.enumerated().filter { $0.element != Self.acceptedReply }
            .map { "request \($0.offset): \($0.element.debugDescription)" }

        #expect(replies.count == Self.requestCount)
        #expect(unexpected.count == 0, "first unexpected replies: \(unexpected.prefix(5))")
        #expect(stats.userQueries == SharedCacheStack.userCount)
        #expect(stats.tokensIssued <= Self.maxTokens)
    }

    @Test func unknownAddressQueriedOnceForAllDaemons() throws {
        let stack = try SharedCacheStack.require()
        let before = try stack.keycloak.stats()

        var replies: [String?] = []
        for daemon in stack.daemons {
            let socket = try Self.connect(to: daemon)
            replies.append(socket.exchange(Self.policyRequest(recipient: "nobody@example.com"), until: "\n\n"))
            socket.close()
        }
        let after = try stack.keycloak.stats()

        #expect(replies == [String?](repeating: Self.noSuchUserReply, count: SharedCacheStack.daemonCount))
        #expect(after.userQueries == before.userQueries + 1)
        #expect(after.tokensIssued <= Self.maxTokens)
    }

    /// Sends request `i` (recipient user01..user20 in turn) to daemon `i % 3`,
    /// one at a time, over one connection per daemon that is replaced every
    /// `requestsPerConnection` requests. Within the first 60 requests every
    /// address reaches every daemon. Returns the replies in order, nil where
    /// the exchange failed.
    static func sendRoundRobin(to daemons: [MailcloakDaemon]) throws -> [String?] {
        let batchSize = requestsPerConnection * daemons.count
        var replies: [String?] = []
        for batchStart in stride(from: 0, to: requestCount, by: batchSize) {
            let sockets = try daemons.map(connect(to:))
            for index in batchStart..<min(batchStart + batchSize, requestCount) {
                let name = SharedCacheStack.username(index % SharedCacheStack.userCount + 1)
                let request = policyRequest(recipient: "\(name)@example.com")
                replies.append(sockets[index % daemons.count].exchange(request, until: "\n\n"))
            }
            sockets.forEach { $0.close() }
        }
        return replies
    }

    /// Builds an unauthenticated RCPT-stage request from a remote sender, with a subset of Postfix's attributes.
    static func policyRequest(recipient: String) -> String {
        [
            "request=smtpd_access_policy", "protocol_state=RCPT", "protocol_name=ESMTP",
            "client_address=127.0.0.1", "client_name=localhost", "helo_name=client.test",
            "sender=x@remote.test", "recipient=\(recipient)", "sasl_method=", "sasl_username=", "sasl_sender=",
        ].joined(separator: "\n") + "\n\n"
    }

    static func connect(to daemon: MailcloakDaemon) throws -> PlainSocket {
        guard let socket = PlainSocket(port: daemon.port) else {
            throw TestEnvironmentError.connectFailed(port: daemon.port, errno: errno)
        }
        return socket
    }
}
