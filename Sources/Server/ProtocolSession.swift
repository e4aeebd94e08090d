// One connection's protocol state: which protocol it speaks (picked by the
// first byte: a letter starts a policy request, a digit a netstring), the
// decoder, and the request waiting for an identity lookup. Requests on one
// connection are answered strictly in order; while one waits for a worker,
// further input stays buffered.
import Log
import Model
import PolicyProtocol
import Reactor
import Resolver
import Socketmap

/// A decoded request waiting for its answer.
private enum PendingRequest {
    case policy(PolicyRequest)
    case socketmap(SocketmapRequest)
}

/// The protocol handler of one connection; lives on its event loop's thread.
final class ProtocolSession: ConnectionHandler {
    private enum Framing {
        case undetermined
        case policy(PolicyRequestDecoder)
        case socketmap(NetstringDecoder)
    }

    /// Most identity lookups one request may need (login, then address).
    private static let maxLookupRounds = 4

    private let context: ServiceContext
    private var framing: Framing = .undetermined
    private var pending: PendingRequest?
    private var fetched: FetchedIdentities = [:]
    private var generation: UInt64 = 0
    /// Services already logged as denied on this connection; each is logged once, every denial is counted.
    private var loggedDenials: Set<String> = []
    /// Counters of the metrics endpoint; nil counts nothing.
    private let metrics: ServerMetrics?
    /// When the request being answered was decoded, in monotonic seconds.
    private var requestStart = 0.0

    init(context: ServiceContext, metrics: ServerMetrics? = nil) {
        self.context = context
        self.metrics = metrics
    }

    func connectionReadable(_ connection: Connection) {
        while pending == nil, !connection.isClosed, connection.bufferedInputCount > 0 {
            guard let request = decodeNext(connection) else { return }
            answer(request, on: connection)
        }
    }

    func connectionReceived(_ message: any Sendable, on connection: Connection) {
        guard let completion = message as? LookupCompletion, completion.generation == generation,
            let request = pending
        else { return }
        fetched[completion.key] = completion.result
        answer(request, on: connection)
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        pending = nil
        metrics?.recordClose(reason)
    }

    // MARK: Decoding

    private func decodeNext(_ connection: Connection) -> PendingRequest? {
        if case .undetermined = framing {
            guard selectFraming(connection) else { return nil }
        }
        var decoded: PendingRequest?
        var failure: (reason: String, kind: String)?
        connection.withInput { buffer in
            switch framing {
            case .undetermined:
                return 0
            case .policy(var decoder):
                defer { framing = .policy(decoder) }
                do {
                    guard let (request, consumed) = try decoder.next(in: buffer) else { return 0 }
                    decoded = .policy(request)
                    return consumed
                } catch {
                    failure = (String(describing: error), Self.errorKind(error))
                    return 0
                }
            case .socketmap(var decoder):
                defer { framing = .socketmap(decoder) }
                do {
                    guard let (range, consumed) = try decoder.next(in: buffer) else { return 0 }
                    let payload = UnsafeRawBufferPointer(rebasing: buffer[range])
                    if let request = SocketmapRequest(payload: payload) {
                        decoded = .socketmap(request)
                    } else {
                        failure = ("socketmap request without a space between map name and key", "missing space")
                    }
                    return consumed
                } catch {
                    failure = (String(describing: error), Self.errorKind(error))
                    return 0
                }
            }
        }
        if let failure {
            rejectInput(connection, reason: failure.reason, kind: failure.kind)
            return nil
        }
        if decoded == nil {
            connection.markRequestStarted()
        } else {
            connection.markRequestComplete()
            if metrics != nil { requestStart = monotonicSeconds() }
        }
        return decoded
    }

    /// Picks the protocol from the first byte and checks that the listener offers it.
    private func selectFraming(_ connection: Connection) -> Bool {
        var first: UInt8 = 0
        connection.withInput { buffer in
            first = buffer[0]
            return 0
        }
        let isLetter = (first | 0x20) >= UInt8(ascii: "a") && (first | 0x20) <= UInt8(ascii: "z")
        let isDigit = first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")
        if isLetter && connection.listener.services.contains(.policy) {
            framing = .policy(PolicyRequestDecoder(limits: context.policyLimits))
            return true
        }
        if isDigit && connection.listener.services.contains(.socketmap) {
            framing = .socketmap(NetstringDecoder(maxLength: context.socketmapMaxRequestSize))
            return true
        }
        rejectInput(connection, reason: "first byte \(first) starts no protocol this listener offers", kind: "first byte")
        return false
    }

    /// Returns the name of a decoding error's case without the values that vary per request,
    /// such as `lineTooLong` for "line longer than 5000 bytes".
    private static func errorKind(_ error: any Error) -> String {
        Mirror(reflecting: error).children.first?.label ?? String(describing: error)
    }

    /// Logs a malformed or oversized request and closes; Postfix reconnects and retries.
    private func rejectInput(_ connection: Connection, reason: String, kind: String) {
        // Rate-limited per listener and kind of fault, because the reason text varies with the
        // bytes received: a flood of one fault gives one line, and each other fault its own.
        let limit = LogContext(.listener, "\(connection.listener.name) \(kind)")
        context.logger.log(.warning, "malformed request, closing connection", limitedBy: limit, [
            (.connection, String(connection.id)), (.peer, connection.peer),
            (.listener, connection.listener.name), (.error, reason),
        ])
        connection.close(reason: .protocolError)
    }

    // MARK: Answering

    private func answer(_ request: PendingRequest, on connection: Connection) {
        switch request {
        case .policy(let policyRequest):
            guard policyRequest.request == "smtpd_access_policy" else {
                rejectInput(
                    connection, reason: "unsupported request type \(policyRequest.request ?? "(none)")",
                    kind: "request type")
                return
            }
            guard connection.grant.policy else {
                deny(connection, service: "policy", map: nil)
                metrics?.recordPolicy(Self.policyDenied, since: requestStart)
                finish(connection, reply: Self.policyDenied.encoded)
                return
            }
            switch context.resolver.decide(policyRequest, fetched: fetched) {
            case .decided(let action):
                metrics?.recordPolicy(action, since: requestStart)
                finish(connection, reply: action.encoded)
                logDecision(connection, policyRequest, action)
            case .needs(let key):
                startLookup(key, for: request, on: connection, busyReply: PolicyAction.overloaded.encoded)
            }
        case .socketmap(let mapRequest):
            guard connection.grant.allowsMap(mapRequest.name) else {
                deny(connection, service: "socketmap", map: mapRequest.name)
                let denied = SocketmapReply.perm("client not authorized for map \(mapRequest.name)")
                metrics?.recordSocketmap(map: mapRequest.name, denied, since: requestStart)
                finish(connection, reply: denied.encoded)
                return
            }
            switch context.resolver.lookup(mapRequest, fetched: fetched) {
            case .decided(let reply):
                metrics?.recordSocketmap(map: mapRequest.name, reply, since: requestStart)
                finish(connection, reply: reply.encoded)
                logDecision(connection, mapRequest, reply)
            case .needs(let key):
                startLookup(key, for: request, on: connection, busyReply: SocketmapReply.temp("server busy").encoded)
            }
        }
    }

    /// The reply to a policy request that the access rules deny: a temporary
    /// failure, so Postfix defers the mail rather than bouncing it.
    static let policyDenied = PolicyAction.deferred(
        code: 451, status: "4.7.0", text: "Policy service access denied for this client")

    /// Logs and counts a request that the listener's access rules deny.
    private func deny(_ connection: Connection, service: String, map: String?) {
        if let counters = connection.security?.counters {
            if service == "policy" {
                SecurityCounters.bump(counters.policyDenied)
            } else {
                SecurityCounters.bump(counters.socketmapDenied)
            }
        }
        guard loggedDenials.insert(map.map { "socketmap:\($0)" } ?? service).inserted, loggedDenials.count <= 16 else {
            return
        }
        context.logger.warning("access denied", [
            (.connection, String(connection.id)), (.peer, connection.peer), (.listener, connection.listener.name),
            (.service, service), (.map, map ?? ""), (.user, connection.peerIdentity?.description ?? ""),
        ])
    }

    private func finish(_ connection: Connection, reply: [UInt8]) {
        connection.send(reply)
        fetched.removeAll(keepingCapacity: true)
        if pending != nil {
            pending = nil
            connection.isReadingPaused = false
        }
    }

    /// Hands one identity lookup to a worker; its answer comes back through the loop.
    private func startLookup(_ key: IdentityKey, for request: PendingRequest, on connection: Connection,
                             busyReply: [UInt8]) {
        guard fetched.count < Self.maxLookupRounds else {
            context.logger.log(.error, "decision needed too many identity lookups",
                               limitedBy: LogContext(.limit, String(Self.maxLookupRounds)),
                               [(.key, key.description), (.limit, String(Self.maxLookupRounds))])
            recordBusy(request)
            finish(connection, reply: busyReply)
            return
        }
        generation &+= 1
        let ticket = generation
        let loop = connection.eventLoop
        let id = connection.id
        let identities = context.identities
        let submitted = context.workers.submit {
            let result: Result<IdentityAnswer, IdentityLookupError>
            do throws(IdentityLookupError) {
                result = .success(try identities.lookup(key))
            } catch {
                result = .failure(error)
            }
            loop.deliver(LookupCompletion(generation: ticket, key: key, result: result), to: id)
        }
        guard submitted else {
            context.logger.log(.warning, "lookup queue full, replying with a temporary failure",
                               limitedBy: LogContext(.reason, "server.worker_queue_limit"),
                               [(.connection, String(id)), (.reason, "server.worker_queue_limit")])
            recordBusy(request)
            finish(connection, reply: busyReply)
            return
        }
        pending = request
        connection.isReadingPaused = true
    }

    /// Counts the temporary failure sent when a lookup cannot start.
    private func recordBusy(_ request: PendingRequest) {
        switch request {
        case .policy:
            metrics?.recordPolicy(PolicyAction.overloaded, since: requestStart)
        case .socketmap(let mapRequest):
            metrics?.recordSocketmap(map: mapRequest.name, .temp("server busy"), since: requestStart)
        }
    }

    /// Logs one policy decision at debug, or at info for the share that `log.decision_sample_rate` picks.
    /// A policy request carries no password or token, so every field may be logged.
    private func logDecision(_ connection: Connection, _ request: PolicyRequest, _ action: PolicyAction) {
        let logger = context.logger
        logger.log(logger.decisionLevel(), "policy decision", [
            (.connection, String(connection.id)), (.service, "policy"), (.state, request.protocolState),
            (.saslUsername, request.saslUsername), (.saslMethod, request.saslMethod),
            (.sender, request.sender ?? ""), (.recipient, request.recipient ?? ""),
            (.decision, DecisionLogFields.decision(action)), (.reply, action.actionText),
        ])
    }

    /// Logs one socketmap reply at debug, or at info for the share that `log.decision_sample_rate` picks.
    private func logDecision(_ connection: Connection, _ request: SocketmapRequest, _ reply: SocketmapReply) {
        let logger = context.logger
        logger.log(logger.decisionLevel(), "socketmap reply", [
            (.connection, String(connection.id)), (.service, "socketmap"), (.map, request.name), (.key, request.key),
            (.decision, DecisionLogFields.decision(reply)), (.reply, DecisionLogFields.text(reply)),
        ])
    }
}
