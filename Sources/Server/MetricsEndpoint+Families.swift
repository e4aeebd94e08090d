// The metric families that MetricsEndpoint reads at scrape time. Label values
// come from fixed sets or from the configuration (listener names), never
// from addresses, users or certificate subjects.
import IdentityProvider
import Log
import Metrics
import Reactor
import Store

extension MetricsEndpoint {
    static func registerDaemonFamilies(_ registry: MetricsRegistry, state: ReadinessState, maxSnapshotAge: Double) {
        registry.collect("mailcloak_build_info", help: "The running release; the value is always 1.", type: .gauge) {
            [MetricSample(1, labels: [.init("version", mailcloakVersion)])]
        }
        registry.collect("mailcloak_draining", help: "1 while the daemon drains connections before it stops.",
                         type: .gauge) {
            [MetricSample(state.draining.load(ordering: .relaxed) ? 1 : 0)]
        }
        registry.collect("mailcloak_snapshot_max_age_seconds",
                         help: "database.max_snapshot_age: older snapshots make /readyz fail.", type: .gauge) {
            [MetricSample(maxSnapshotAge)]
        }
    }

    static func registerConnectionFamilies(_ registry: MetricsRegistry,
                                           loops: @escaping @Sendable () -> ServerLoopGroup?) {
        registry.collect("mailcloak_connections_open", help: "Connections open on the protocol listeners.",
                         type: .gauge) {
            [MetricSample(Double(loops()?.openConnections ?? 0))]
        }
        registry.collect("mailcloak_connections_rejected_total",
                         help: "Connections closed at accept because a connection limit was reached.",
                         type: .counter) {
            guard let group = loops() else { return [] }
            return AdmissionRejection.allCases.map { reason in
                MetricSample(Double(group.rejectedConnections(reason)), labels: [.init("reason", reason.rawValue)])
            }
        }
        registerSecurityFamilies(registry, loops: loops)
    }

    /// Registers the listeners' handshake and access counters and their certificate expiries.
    private static func registerSecurityFamilies(_ registry: MetricsRegistry,
                                                 loops: @escaping @Sendable () -> ServerLoopGroup?) {
        let securities: @Sendable () -> [ListenerSecurity] = {
            (loops()?.listeners ?? []).compactMap(\.security)
        }
        registry.collect("mailcloak_tls_handshakes_total", help: "TLS handshakes by listener and result.",
                         type: .counter) {
            securities().filter(\.isTLS).flatMap { security in
                let counters = security.counters
                let results = [
                    ("completed", counters.handshakesCompleted.load(ordering: .relaxed)),
                    ("failed", counters.handshakesFailed.load(ordering: .relaxed)),
                    ("timeout", counters.handshakeTimeouts.load(ordering: .relaxed)),
                ]
                return results.map { result, count in
                    MetricSample(Double(count), labels: [.init("listener", security.listenerName),
                                                         .init("result", result)])
                }
            }
        }
        registry.collect("mailcloak_tls_sessions_resumed_total",
                         help: "Completed TLS handshakes that resumed a session.", type: .counter) {
            securities().filter(\.isTLS).map { security in
                MetricSample(Double(security.counters.handshakesResumed.load(ordering: .relaxed)),
                             labels: [.init("listener", security.listenerName)])
            }
        }
        registry.collect("mailcloak_access_denied_total",
                         help: "Requests that the listener's access rules denied, by service.", type: .counter) {
            securities().flatMap { security in
                [
                    MetricSample(Double(security.counters.policyDenied.load(ordering: .relaxed)),
                                 labels: [.init("listener", security.listenerName), .init("service", "policy")]),
                    MetricSample(Double(security.counters.socketmapDenied.load(ordering: .relaxed)),
                                 labels: [.init("listener", security.listenerName), .init("service", "socketmap")]),
                ]
            }
        }
        registry.collect("mailcloak_proxy_headers_rejected_total",
                         help: "Connections closed because their PROXY protocol header was invalid.", type: .counter) {
            securities().map { security in
                MetricSample(Double(security.counters.proxyHeadersRejected.load(ordering: .relaxed)),
                             labels: [.init("listener", security.listenerName)])
            }
        }
        registry.collect("mailcloak_tls_reload_failures_total",
                         help: "Reloads of TLS material or access rules that failed and kept the old ones.",
                         type: .counter) {
            securities().filter(\.isTLS).map { security in
                MetricSample(Double(security.counters.reloadFailures.load(ordering: .relaxed)),
                             labels: [.init("listener", security.listenerName)])
            }
        }
        registry.collect("mailcloak_certificate_expiry_timestamp_seconds",
                         help: "Expiry of the server certificate and of the earliest client CA, in seconds since 1970.",
                         type: .gauge) {
            securities().flatMap(certificateSamples)
        }
    }

    /// Returns the server certificate's expiry and the earliest client CA expiry of one listener.
    private static func certificateSamples(_ security: ListenerSecurity) -> [MetricSample] {
        // The first entry is the server certificate; the rest come from the client CA bundle.
        let expiries = security.certificateExpiries
        guard let server = expiries.first else { return [] }
        var samples = [MetricSample(server.notAfter, labels: [.init("listener", security.listenerName),
                                                              .init("role", "server")])]
        if let earliest = expiries.dropFirst().map(\.notAfter).min() {
            samples.append(MetricSample(earliest, labels: [.init("listener", security.listenerName),
                                                           .init("role", "client_ca")]))
        }
        return samples
    }

    static func registerIdentityFamilies(_ registry: MetricsRegistry, identities: CachedIdentityDirectory) {
        registry.collect("mailcloak_identity_cache_requests_total",
                         help: "Identity cache reads by layer (l1 in process, redis shared) and result.",
                         type: .counter) {
            let stats = identities.stats
            return [
                ("l1", "hit", stats.l1Hits), ("l1", "miss", stats.l1Misses),
                ("redis", "hit", stats.l2Hits), ("redis", "miss", stats.l2Misses),
            ].map { layer, result, count in
                MetricSample(Double(count), labels: [.init("layer", layer), .init("result", result)])
            }
        }
        registry.collect("mailcloak_identity_provider_calls_total",
                         help: "Identity provider queries by outcome.", type: .counter) {
            let stats = identities.stats
            return [("found", stats.providerFound), ("not_found", stats.providerNotFound),
                    ("failure", stats.providerFailures)].map { outcome, count in
                MetricSample(Double(count), labels: [.init("outcome", outcome)])
            }
        }
        registry.collect("mailcloak_identity_provider_call_duration_seconds",
                         help: "Duration of identity provider queries.", type: .summary) {
            let stats = identities.stats
            return [MetricSample(stats.providerLatencySeconds, suffix: "_sum"),
                    MetricSample(Double(stats.providerLatencyCount), suffix: "_count")]
        }
        registry.collect("mailcloak_identity_breaker_state",
                         help: "1 for the circuit breaker's current state, 0 for the others.", type: .gauge) {
            let current = identities.stats.breakerState
            return [CircuitBreakerState.closed, .open, .halfOpen].map { state in
                MetricSample(state == current ? 1 : 0, labels: [.init("state", state.rawValue)])
            }
        }
        registry.collect("mailcloak_identity_stale_answers_total",
                         help: "Answers served past their TTL because the provider failed or the breaker was open.",
                         type: .counter) {
            [MetricSample(Double(identities.stats.staleAnswers))]
        }
        registry.collect("mailcloak_identity_breaker_rejections_total",
                         help: "Lookups failed because the breaker was open and no stale answer was kept.",
                         type: .counter) {
            [MetricSample(Double(identities.stats.breakerRejections))]
        }
        registry.collect("mailcloak_identity_provider_up",
                         help: "1 when the last provider check and every lookup since succeeded.", type: .gauge) {
            if case .success = identities.readiness { return [MetricSample(1)] }
            return [MetricSample(0)]
        }
        registry.collect("mailcloak_redis_errors_total",
                         help: "Redis commands that failed, refusals during reconnect backoff included.",
                         type: .counter) {
            [MetricSample(Double(identities.stats.redisErrors))]
        }
    }

    static func registerStoreFamilies(_ registry: MetricsRegistry, store: SnapshotStore) {
        registry.collect("mailcloak_snapshot_loaded", help: "1 once a database snapshot has been loaded.",
                         type: .gauge) {
            [MetricSample(store.status.snapshotAge == nil ? 0 : 1)]
        }
        registry.collect("mailcloak_snapshot_age_seconds",
                         help: "Time since the current snapshot was read; absent before the first load.",
                         type: .gauge) {
            store.status.snapshotAge.map { [MetricSample($0)] } ?? []
        }
        registry.collect("mailcloak_snapshot_rows", help: "Rows in the current snapshot, by table.", type: .gauge) {
            let counts = store.status.counts
            return [("domains", counts.domains), ("aliases", counts.aliases), ("apps", counts.apps),
                    ("app_senders", counts.appSenders)].map { table, count in
                MetricSample(Double(count), labels: [.init("table", table)])
            }
        }
        registry.collect("mailcloak_snapshot_loads_total", help: "Snapshot loads that succeeded.", type: .counter) {
            [MetricSample(Double(store.status.loads))]
        }
        registry.collect("mailcloak_store_connected",
                         help: "1 while the PostgreSQL connection is open and listening.", type: .gauge) {
            [MetricSample(store.status.connected ? 1 : 0)]
        }
        registry.collect("mailcloak_store_connections_total",
                         help: "PostgreSQL connections opened; more than 1 means the store reconnected.",
                         type: .counter) {
            [MetricSample(Double(store.status.connects))]
        }
        registry.collect("mailcloak_store_error",
                         help: "1 while the last PostgreSQL connection, query or schema check failed.", type: .gauge) {
            [MetricSample(store.status.lastError == nil ? 0 : 1)]
        }
        registry.collect("mailcloak_postgres_errors_total",
                         help: "PostgreSQL connection, query and schema check failures of the snapshot store.",
                         type: .counter) {
            [MetricSample(Double(store.status.failures))]
        }
    }

    static func registerLogFamilies(_ registry: MetricsRegistry, logger: Logger) {
        registry.collect("mailcloak_log_lines_dropped_total",
                         help: "Log lines dropped because the syslog socket was full or missing or stderr failed.",
                         type: .counter) {
            [MetricSample(Double(logger.droppedLines))]
        }
    }
}
