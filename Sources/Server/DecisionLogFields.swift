// Values of the decision and reply fields of per-request log lines. The
// decision names are the `decision` label values of mailcloak_requests_total,
// so a log search and a metric query use the same words.
import PolicyProtocol
import Socketmap

enum DecisionLogFields {
    /// Returns `dunno`, `reject` or `defer`.
    static func decision(_ action: PolicyAction) -> String {
        switch action {
        case .dunno: ServerMetrics.policyDecisionLabels[0]
        case .reject: ServerMetrics.policyDecisionLabels[1]
        case .deferred: ServerMetrics.policyDecisionLabels[2]
        }
    }

    /// Returns `ok`, `notfound`, `temp`, `timeout` or `perm`.
    static func decision(_ reply: SocketmapReply) -> String {
        switch reply {
        case .ok: ServerMetrics.socketmapDecisionLabels[0]
        case .notFound: ServerMetrics.socketmapDecisionLabels[1]
        case .temp: ServerMetrics.socketmapDecisionLabels[2]
        case .timeout: ServerMetrics.socketmapDecisionLabels[3]
        case .perm: ServerMetrics.socketmapDecisionLabels[4]
        }
    }

    /// Returns the reply as Postfix reads it, without the netstring framing: `OK alice@example.com`.
    static func text(_ reply: SocketmapReply) -> String {
        switch reply {
        case .ok(let data): "OK " + data
        case .notFound: "NOTFOUND"
        case .temp(let reason): "TEMP " + reason
        case .timeout(let reason): "TIMEOUT " + reason
        case .perm(let reason): "PERM " + reason
        }
    }
}
