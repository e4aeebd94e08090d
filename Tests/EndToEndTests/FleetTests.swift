// The fleet end to end: Postfix sends its policy requests and lookups to
// three mailcloak instances through stunnel (mutual TLS, node certificate
// mx1) and HAProxy (TCP, TLS passthrough, PROXY v2, /readyz checks, redispatch). Each scenario asserts
// the exact SMTP replies a client sees, also while an instance is killed or
// drained, while the server certificate is rotated, and while PostgreSQL or
// Redis is down. Every scenario starts from three healthy instances.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.serialized, .fleetStack)
struct Fleet {
    @Test func oauthUserSenderOwnership() throws {
        let stack = try FleetStack.require()
        try stack.ensureHealthy()
        let token = try stack.accessToken(for: "alice")
        let messages = [
            FleetMessage.oauth("alice@example.com", token: token, from: "alice@example.com", expecting: FleetMessage.accepted),
            FleetMessage.oauth("alice@example.com", token: token, from: "sales@example.com", expecting: FleetMessage.accepted),
            FleetMessage.oauth(
                "alice@example.com", token: token, from: "bob@example.com", expecting: FleetMessage.senderNotOwned),
        ]

        let outcomes = stack.sendAll(messages)

        #expect(outcomes[0].replies == messages[0].expected)
        #expect(outcomes[1].replies == messages[1].expected)
        #expect(outcomes[2].replies == messages[2].expected)
    }

    @Test func appSenderAllowList() throws {
        let stack = try FleetStack.require()
        try stack.ensureHealthy()
        let allowed = FleetMessage.app(from: FleetStack.appSender, expecting: FleetMessage.accepted)
        let forbidden = FleetMessage.app(from: "alice@example.com", expecting: FleetMessage.senderNotOwned)

        let outcomes = stack.sendAll([allowed, forbidden])

        #expect(outcomes[0].replies == allowed.expected)
        #expect(outcomes[1].replies == forbidden.expected)
    }

    @Test func inboundUserAliasAndUnknown() throws {
        let stack = try FleetStack.require()
        try stack.ensureHealthy()
        let marker = uniqueMarker()

        let toUser = try stack.deliver(to: "alice@example.com", subject: "\(marker)-user")
        let toAlias = try stack.deliver(to: "sales@example.com", subject: "\(marker)-alias")
        let unknown = stack.send(.inbound(to: "nobody@example.com", expecting: FleetMessage.noSuchUser("nobody@example.com")))
        let mailbox = stack.postfix.mailboxFolder("alice@example.com")
        let userMessage = try stack.postfix.waitForMessage(in: mailbox, containing: "Subject: \(marker)-user")
        let aliasMessage = try stack.postfix.waitForMessage(in: mailbox, containing: "Subject: \(marker)-alias")

        #expect(toUser.replies(to: "RCPT TO") == [["250 2.1.5 Ok"]])
        #expect(toUser.status == 0)
        #expect(toAlias.replies(to: "RCPT TO") == [["250 2.1.5 Ok"]])
        #expect(toAlias.status == 0)
        #expect(unknown.replies == unknown.message.expected)
        #expect(textLines(userMessage).contains("Delivered-To: alice@example.com"))
        #expect(textLines(aliasMessage).contains("X-Original-To: sales@example.com"))
        #expect(textLines(aliasMessage).contains("Delivered-To: alice@example.com"))
    }

    /// An alias added with mailcloakctl reaches every instance through
    /// LISTEN/NOTIFY. Messages go out three at a time until every instance
    /// has served requests for them, and each must be accepted.
    @Test func addedAliasAcceptedByEveryInstance() throws {
        let stack = try FleetStack.require()
        try stack.ensureHealthy()
        let alias = "\(uniqueMarker())@example.com"
        let before = stack.send(.inbound(to: alias, expecting: FleetMessage.noSuchUser(alias)))
        let reloads = stack.daemons.map { $0.eventCount("snapshot loaded") }
        let requestsBefore = try stack.daemons.map { try $0.answeredRequests() }

        try stack.ctl.runChecked(["aliases", "add", alias, "bob"])
        let reloaded = zip(stack.daemons, reloads).map { daemon, count in
            waitUntil(timeout: 10) { daemon.eventCount("snapshot loaded") > count }
        }
        var outcomes: [FleetOutcome] = []
        var requestsAfter = requestsBefore
        for _ in 0..<10 {
            outcomes += stack.sendConcurrently(
                Array(repeating: .inbound(to: alias, expecting: FleetMessage.accepted), count: 3))
            requestsAfter = try stack.daemons.map { try $0.answeredRequests() }
            if zip(requestsAfter, requestsBefore).allSatisfy({ $0 > $1 }) {
                break
            }
        }

        #expect(before.replies == before.message.expected)
        #expect(reloaded == [true, true, true])
        #expect(outcomes.filter { !$0.matches }.map(\.description) == [])
        #expect(requestsAfter[0] > requestsBefore[0])
        #expect(requestsAfter[1] > requestsBefore[1])
        #expect(requestsAfter[2] > requestsBefore[2])
    }

    /// m1 is killed with SIGKILL and m2 drained with SIGTERM while two clients
    /// send the whole mix. Postfix retries a broken connection and HAProxy
    /// sends the retry to an instance that still serves, so no client gets a
    /// reply other than the one a healthy fleet sends.
    @Test func killAndDrainKeepRepliesUnchanged() throws {
        let stack = try FleetStack.require()
        try stack.ensureHealthy()
        let messages = FleetMessage.mix(aliceToken: try stack.accessToken(for: "alice"))
        let killed = stack.daemons[0]
        let drained = stack.daemons[1]

        let load = FleetLoad(stack: stack, messages: messages)
        let warmedUp = load.waitForMore(6)
        killed.send(SIGKILL)
        let killStatus = killed.waitForExit(timeout: 10)
        let sentAfterKill = load.waitForMore(6)
        drained.send(SIGTERM)
        let drainStatus = drained.waitForExit(timeout: 20)
        let sentAfterDrain = load.waitForMore(10)
        let outcomes = load.stop()
        let states = try stack.haproxy.serverStates()

        #expect(warmedUp)
        #expect(killStatus == 128 + SIGKILL)
        #expect(sentAfterKill)
        #expect(drainStatus == 0)
        #expect(sentAfterDrain)
        #expect(states["m1"] == "DOWN")
        #expect(states["m2"] == "DOWN")
        #expect(states["m3"] == "UP")
        #expect(outcomes.count >= 22)
        #expect(outcomes.filter { !$0.matches }.map(\.description) == [])
    }

    /// A new server key and certificate from the same CA replace the files of
    /// every instance and each gets SIGHUP while mail flows. New handshakes,
    /// direct and through HAProxy, then see the new serial number.
    @Test func certificateRotationUnderLoad() throws {
        let stack = try FleetStack.require()
        try stack.ensureHealthy()
        let messages = FleetMessage.mix(aliceToken: try stack.accessToken(for: "alice"))
        let oldSerial = try stack.certificateSerial(file: stack.live.appendingPathComponent("server.crt"))
        let reloads = stack.daemons.map { $0.eventCount("TLS and access rules reloaded") }

        let load = FleetLoad(stack: stack, messages: messages)
        let warmedUp = load.waitForMore(4)
        let newSerial = try stack.rotateServerCertificate()
        stack.daemons.forEach { $0.send(SIGHUP) }
        let reloaded = zip(stack.daemons, reloads).map { daemon, count in
            waitUntil(timeout: 10) { daemon.eventCount("TLS and access rules reloaded") > count }
        }
        let directSerials = try stack.daemons.map { try stack.presentedSerial(port: $0.tlsPort) }
        let balancedSerial = try stack.presentedSerial(port: stack.haproxy.frontendPort)
        let sentAfterRotation = load.waitForMore(8)
        let outcomes = load.stop()

        #expect(warmedUp)
        #expect(newSerial != oldSerial)
        #expect(reloaded == [true, true, true])
        #expect(directSerials == [newSerial, newSerial, newSerial])
        #expect(balancedSerial == newSerial)
        #expect(sentAfterRotation)
        #expect(outcomes.filter { !$0.matches }.map(\.description) == [])
    }

    /// A TLS session that node mx1 makes with one instance resumes on the
    /// others, because all three share one session ticket key file. A node
    /// that HAProxy sends elsewhere on reconnecting skips the full handshake.
    @Test func sessionResumesOnEveryInstance() throws {
        let stack = try FleetStack.require()
        try stack.ensureHealthy()
        let session = stack.directory.appendingPathComponent("session-\(UUID().uuidString.prefix(8)).pem")
        defer { try? FileManager.default.removeItem(at: session) }

        let first = try stack.handshake(port: stack.daemons[0].tlsPort, saving: session)
        let others = try stack.daemons.dropFirst().map { try stack.handshake(port: $0.tlsPort, offering: session) }

        #expect(first == "New")
        #expect(others == ["Reused", "Reused"])
    }

    /// With PostgreSQL stopped, user, alias and app decisions come from each
    /// instance's snapshot, and apps log in through the outage cache of the
    /// checkpassword wrapper. After the restart every instance reconnects.
    @Test func postgresOutageServedFromSnapshot() throws {
        let stack = try FleetStack.require()
        try stack.ensureHealthy()
        let messages = FleetMessage.mix(aliceToken: try stack.accessToken(for: "alice"))
        let beforeOutage = stack.sendAll(messages)
        let connects = stack.daemons.map { $0.eventCount("store connected") }

        try stack.postgres.stop()
        let duringOutage = stack.sendAll(messages) + stack.sendAll(messages)
        let readyDuringOutage = try stack.daemons.map { try $0.readinessStatus() }
        try stack.postgres.start()
        let reconnected = zip(stack.daemons, connects).map { daemon, count in
            waitUntil(timeout: 15) { daemon.eventCount("store connected") > count }
        }
        let afterOutage = stack.sendAll(messages)

        #expect(beforeOutage.filter { !$0.matches }.map(\.description) == [])
        #expect(duringOutage.filter { !$0.matches }.map(\.description) == [])
        // The app logged in through the checkpassword wrapper's outage cache.
        #expect(stack.dovecot.log().contains("; app \(FleetStack.appID) checked against its hash cached "))
        #expect(readyDuringOutage == [200, 200, 200])
        #expect(reconnected == [true, true, true])
        #expect(afterOutage.filter { !$0.matches }.map(\.description) == [])
    }

    /// With Redis stopped, lookups go on through each instance's own cache and
    /// keycloak_dev.py, including addresses never looked up before. At least
    /// one instance must log the outage, which shows that Redis was in the path.
    @Test func redisOutageKeepsDecisions() throws {
        let stack = try FleetStack.require()
        try stack.ensureHealthy()
        let outageEvent = "redis unavailable"
        let outagesBefore = stack.daemons.map { $0.logLineCount(containing: outageEvent) }.reduce(0, +)
        let fresh = "\(uniqueMarker())@example.com"
        let messages =
            FleetMessage.mix(aliceToken: try stack.accessToken(for: "alice")) + [
                .inbound(to: "bob@example.com", expecting: FleetMessage.accepted),
                .inbound(to: fresh, expecting: FleetMessage.noSuchUser(fresh)),
            ]

        stack.redis.stop()
        let duringOutage = stack.sendAll(messages)
        let outagesLogged = stack.daemons.map { $0.logLineCount(containing: outageEvent) }.reduce(0, +)
        let restarted = try stack.redis.start()
        let afterOutage = stack.sendAll(messages)

        #expect(duringOutage.filter { !$0.matches }.map(\.description) == [])
        #expect(outagesLogged > outagesBefore)
        #expect(restarted)
        #expect(afterOutage.filter { !$0.matches }.map(\.description) == [])
    }
}
