// The collaborators every protocol session shares: the resolver, the worker pool that runs
// identity lookups, and the protocol limits. Immutable after start.
import Config
import Log
import Model
import PolicyProtocol
import Reactor
import Resolver

/// Shared, immutable collaborators of the protocol sessions.
public struct ServiceContext: Sendable {
    public let resolver: Resolver
    public let identities: any IdentityDirectory
    public let workers: WorkerPool
    public let policyLimits: PolicyLimits
    public let socketmapMaxRequestSize: Int
    public let logger: Logger

    public init(resolver: Resolver, identities: any IdentityDirectory, workers: WorkerPool, server: ServerConfig,
                logger: Logger) {
        self.resolver = resolver
        self.identities = identities
        self.workers = workers
        self.policyLimits = PolicyLimits(
            maxLineLength: server.policyMaxLineLength, maxAttributes: server.policyMaxAttributes,
            maxRequestSize: server.policyMaxRequestSize)
        self.socketmapMaxRequestSize = server.socketmapMaxRequestSize
        self.logger = logger
    }
}

/// Creates a `ProtocolSession` for each accepted connection.
public struct SessionFactory: ConnectionHandlerFactory {
    let context: ServiceContext

    public init(context: ServiceContext) {
        self.context = context
    }

    public func makeHandler(for connection: Connection) -> any ConnectionHandler {
        ProtocolSession(context: context)
    }
}

/// The answer of one identity lookup, sent from a worker back to the session's loop.
struct LookupCompletion: Sendable {
    let generation: UInt64
    let key: IdentityKey
    let result: Result<IdentityAnswer, IdentityLookupError>
}
