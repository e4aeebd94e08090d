// Policy decisions while the identity provider is down, with the real
// directory in front of the Keycloak development directory and the
// resolver driven as the server drives it: tempfail by default, DUNNO in
// fail-open mode, and the stale answer while one is kept.
import Config
import Model
import PolicyProtocol
import Resolver
import Testing

@testable import IdentityProvider

final class FixedSnapshot: SnapshotProvider {
    let current: Snapshot? = Snapshot(
        domains: [DomainEntry(name: "example.com", enabled: true)], aliases: [], apps: [], loadedAt: 1_700_000_000)
}

@Suite final class FailureModeTests {
    let server: KeycloakDevServer
    let clock = ManualClock()

    init() throws {
        server = try KeycloakDevServer()
    }

    deinit {
        try? server.reset()
        server.stop()
    }

    /// Decides an RCPT request for `recipient` from an external sender, fetching as the server does.
    func decide(_ recipient: String, mode: PolicyConfig.FailureMode, directory: CachedIdentityDirectory) -> PolicyAction? {
        var policy = PolicyConfig()
        policy.failureMode = mode
        let resolver = Resolver(config: policy, snapshots: FixedSnapshot(), identities: directory)
        let request = PolicyRequest(
            request: "smtpd_access_policy", protocolState: "RCPT", sender: "someone@external.org",
            recipient: recipient, saslMethod: "", saslUsername: "", clientAddress: "192.0.2.10")
        var fetched: FetchedIdentities = [:]
        for _ in 0..<4 {
            switch resolver.decide(request, fetched: fetched) {
            case .decided(let action):
                return action
            case .needs(let key):
                do throws(IdentityLookupError) {
                    fetched[key] = .success(try directory.lookup(key))
                } catch {
                    fetched[key] = .failure(error)
                }
            }
        }
        return nil
    }

    func directory() throws -> CachedIdentityDirectory {
        var config = server.identityConfig()
        config.cache.positiveTTL = 60
        config.cache.ttlJitter = 0
        config.breaker.failureThreshold = 1
        return try makeIdentityDirectory(config: config, logger: quietLogger, clock: clock.read)
    }

    @Test func outageDefersByDefault() throws {
        let directory = try directory()
        try server.configure(#"{"failure": "500"}"#)
        #expect(decide("alice@example.com", mode: .tempfail, directory: directory) == .lookupFailure)
    }

    @Test func outageAcceptsInFailOpenMode() throws {
        let directory = try directory()
        try server.configure(#"{"failure": "500"}"#)
        #expect(decide("alice@example.com", mode: .dunno, directory: directory) == .dunno)
        // The breaker is open now; the next decision does not reach the provider and still passes.
        #expect(decide("bob@example.com", mode: .dunno, directory: directory) == .dunno)
    }

    @Test func staleAnswerKeepsRejectingUnknown() throws {
        let directory = try directory()
        #expect(decide("nobody@example.com", mode: .tempfail, directory: directory) == .noSuchUser)
        clock.advance(seconds: 120)
        try server.configure(#"{"failure": "500"}"#)
        #expect(decide("nobody@example.com", mode: .tempfail, directory: directory) == .noSuchUser)
    }
}
