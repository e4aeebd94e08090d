// The instruments that the protocol sessions update on the reactor threads:
// requests by service, map and decision, request latency per service,
// accepted connections and closes by reason. Every series is created here,
// once, for the fixed label values, so a request costs an array index and a
// few relaxed atomic adds, with no lock and no allocation.
import Metrics
import PolicyProtocol
import Reactor
import Socketmap

/// Counters and histograms of the request path; shared by every loop.
public final class ServerMetrics: Sendable {
    /// Services as the `service` label writes them.
    enum Service: Int, CaseIterable {
        case policy, socketmap
        var label: String { self == .policy ? "policy" : "socketmap" }
    }

    /// Socketmap table names as the `map` label writes them; any other name counts as `other`.
    static let mapLabels = ["alias", "domain", "mailbox", "other"]
    static let policyDecisionLabels = ["dunno", "reject", "defer"]
    static let socketmapDecisionLabels = ["ok", "notfound", "temp", "timeout", "perm"]
    /// Upper bounds of the latency buckets, in seconds: from 100 µs (a decision from memory)
    /// to 10 s (a provider call near its timeout).
    static let latencyBounds = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                0.5, 1, 2.5, 5, 10]
    /// Close reasons counted; the TLS and PROXY reasons close before a session exists.
    static let closeReasons: [CloseReason] = [
        .peerClosed, .readFailed, .writeFailed, .protocolError, .idleTimeout, .ioTimeout, .inputLimit,
        .outputLimit, .shutdown,
    ]

    public let registry: MetricsRegistry
    private let policyRequests: [Counter]
    /// Indexed by map, then by decision.
    private let socketmapRequests: [[Counter]]
    private let latency: [Histogram]
    let accepted: Counter
    private let closed: [CloseReason: Counter]

    /// Registers the request-path series in `registry`.
    public init(registry: MetricsRegistry) {
        self.registry = registry
        let requestsHelp = "Requests answered, by service, socketmap table and decision."
        policyRequests = Self.policyDecisionLabels.map { decision in
            registry.counter("mailcloak_requests_total", help: requestsHelp,
                             labels: [.init("service", "policy"), .init("decision", decision)])
        }
        socketmapRequests = Self.mapLabels.map { map in
            Self.socketmapDecisionLabels.map { decision in
                registry.counter("mailcloak_requests_total", help: requestsHelp, labels: [
                    .init("service", "socketmap"), .init("map", map), .init("decision", decision),
                ])
            }
        }
        latency = Service.allCases.map { service in
            registry.histogram(
                "mailcloak_request_duration_seconds",
                help: "Time from a decoded request until its reply is sent, identity lookups included.",
                upperBounds: Self.latencyBounds, labels: [.init("service", service.label)])
        }
        accepted = registry.counter(
            "mailcloak_connections_accepted_total",
            help: "Connections handed to a protocol session, after any TLS handshake and PROXY header.")
        var closed: [CloseReason: Counter] = [:]
        for reason in Self.closeReasons {
            closed[reason] = registry.counter(
                "mailcloak_connections_closed_total", help: "Connections closed after setup, by reason.",
                labels: [.init("reason", reason.rawValue)])
        }
        self.closed = closed
    }

    /// Counts a policy reply and its latency since `start` (monotonic seconds).
    ///
    /// Sessions call it just before they send the reply, so a client that has read
    /// the reply always finds it counted.
    func recordPolicy(_ action: PolicyAction, since start: Double) {
        let index = switch action {
        case .dunno: 0
        case .reject: 1
        case .deferred: 2
        }
        policyRequests[index].increment()
        latency[Service.policy.rawValue].observe(monotonicSeconds() - start)
    }

    /// Counts a socketmap reply for table `map` and its latency since `start` (monotonic seconds).
    func recordSocketmap(map: String, _ reply: SocketmapReply, since start: Double) {
        let mapIndex = switch map {
        case "alias": 0
        case "domain": 1
        case "mailbox": 2
        default: 3
        }
        let decisionIndex = switch reply {
        case .ok: 0
        case .notFound: 1
        case .temp: 2
        case .timeout: 3
        case .perm: 4
        }
        socketmapRequests[mapIndex][decisionIndex].increment()
        latency[Service.socketmap.rawValue].observe(monotonicSeconds() - start)
    }

    /// Counts a closed connection by `reason`.
    func recordClose(_ reason: CloseReason) {
        closed[reason]?.increment()
    }
}

/// Creates a `ProtocolSession` that counts into `metrics` for each accepted connection.
struct MeteredSessionFactory: ConnectionHandlerFactory {
    let context: ServiceContext
    let metrics: ServerMetrics

    func makeHandler(for connection: Connection) -> any ConnectionHandler {
        metrics.accepted.increment()
        return ProtocolSession(context: context, metrics: metrics)
    }
}
