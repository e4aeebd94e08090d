// The decision engine shared by the policy and socketmap services. It decides
// from the snapshot and from identity answers already in memory. When one is
// missing it returns the key to fetch, and the caller asks again with the
// fetched answer. Every decision is a pure function of the request, the
// snapshot, the identity answers and the configuration.
import Config
import Log
import Model
import PolicyProtocol
import Socketmap

/// The outcome of one attempt to decide.
public enum Resolution<Reply: Sendable & Equatable>: Sendable, Equatable {
    /// The reply to send.
    case decided(Reply)
    /// This identity lookup must be fetched before deciding.
    case needs(IdentityKey)
}

/// Decides policy requests and socketmap lookups.
public final class Resolver: Sendable {
    let config: PolicyConfig
    let snapshots: any SnapshotProvider
    let identities: any IdentityDirectory
    let logger: Logger

    public init(config: PolicyConfig, snapshots: any SnapshotProvider, identities: any IdentityDirectory,
                logger: Logger = .shared) {
        self.config = config
        self.snapshots = snapshots
        self.identities = identities
        self.logger = logger
    }

    /// Decides a policy request, using `fetched` answers before the cache.
    public func decide(_ request: PolicyRequest, fetched: FetchedIdentities = [:]) -> Resolution<PolicyAction> {
        let state = request.protocolState.uppercased()
        guard state == "RCPT" || state == "MAIL" else { return .decided(.dunno) }
        guard let snapshot = snapshots.current else { return .decided(.internalError) }
        let view = IdentityView(directory: identities, fetched: fetched)
        let decision = PolicyDecision(request: request, snapshot: snapshot, identities: view, config: config)
        do {
            let action = state == "RCPT" ? try decision.recipientStage() : try decision.senderCheck()
            return .decided(action)
        } catch {
            return resolveGap(error, request: request)
        }
    }

    /// Answers a socketmap lookup, using `fetched` answers before the cache.
    public func lookup(_ request: SocketmapRequest, fetched: FetchedIdentities = [:]) -> Resolution<SocketmapReply> {
        guard let snapshot = snapshots.current else { return .decided(.temp("database snapshot not loaded")) }
        let view = IdentityView(directory: identities, fetched: fetched)
        let maps = SocketmapLookup(snapshot: snapshot, identities: view, config: config)
        do {
            return .decided(try maps.reply(map: request.name, key: request.key))
        } catch {
            switch error {
            case .missing(let key):
                return .needs(key)
            case .failed(let key, let lookupError):
                logger.debug("identity lookup failed", [(.map, request.name), (.key, key.description),
                                                       (.error, String(describing: lookupError))])
                return .decided(.temp("identity provider unavailable"))
            }
        }
    }

    /// The policy reply when no worker can take a lookup.
    public var overloadedAction: PolicyAction { .overloaded }

    private func resolveGap(_ gap: IdentityGap, request: PolicyRequest) -> Resolution<PolicyAction> {
        switch gap {
        case .missing(let key):
            return .needs(key)
        case .failed(let key, let error):
            logger.debug("identity lookup failed", [(.key, key.description), (.error, String(describing: error))])
            switch config.failureMode {
            case .tempfail: return .decided(.lookupFailure)
            case .dunno: return .decided(.dunno)
            }
        }
    }
}
