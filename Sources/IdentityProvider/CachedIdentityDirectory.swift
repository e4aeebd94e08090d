// The IdentityDirectory the daemon uses: the in-process cache in front of
// the Keycloak client, with single-flight so that concurrent misses for one
// key cost one provider call.
//
// Lookup path: L1 (IdentityCache, this process) -> L2 (shared Redis cache,
// not built yet) -> provider (Keycloak admin API). The L2 slots into
// `fetch(_:)`: ask it after the L1 miss, and store provider answers in both.
import Config
import Log
import Model

/// Identity lookups through an in-process cache, then the identity provider.
/// Thread-safe. `cachedAnswer(for:)` never blocks on I/O; `lookup(_:)`
/// blocks and belongs on a worker thread.
public final class CachedIdentityDirectory: IdentityDirectory {
    /// The in-process cache of answers.
    public let cache: IdentityCache
    let client: KeycloakClient
    let tokens: KeycloakTokenProvider
    private let flights: SingleFlight<IdentityKey, IdentityAnswer>
    private let health = ProviderHealth()
    private let config: IdentityConfig

    init(config: IdentityConfig, client: KeycloakClient, tokens: KeycloakTokenProvider, cache: IdentityCache) {
        self.config = config
        self.client = client
        self.tokens = tokens
        self.cache = cache
        // A provider call can take two token requests and two user queries
        // (the second pair after a 401), each bounded by request_timeout.
        flights = SingleFlight(waitLimitSeconds: 4 * config.keycloak.requestTimeout + 1)
    }

    public func cachedAnswer(for key: IdentityKey) -> IdentityAnswer? {
        cache.answer(for: key)
    }

    public func lookup(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer {
        if let answer = cache.answer(for: key) { return answer }
        return try flights.run(key) { () throws(IdentityLookupError) -> IdentityAnswer in
            // A call for this key may have finished between the miss above
            // and the start of this one.
            if let answer = cache.answer(for: key) { return answer }
            return try fetch(key)
        }
    }

    /// Asks the provider and caches the answer. Errors are not cached.
    private func fetch(_ key: IdentityKey) throws(IdentityLookupError) -> IdentityAnswer {
        do {
            let answer = try client.lookup(key)
            cache.store(answer, for: key)
            health.recordLookupSuccess()
            return answer
        } catch {
            if case .unavailable(let reason) = error { health.recordLookupFailure(reason: reason) }
            throw error
        }
    }

    /// Runs the provider check (token, service-account roles, one user
    /// query) with this directory's client, records the result for
    /// `readiness`, and returns it. Blocks: call it off the reactor threads.
    public func checkProvider() -> Result<String, IdentityProviderError> {
        let result = IdentityProviderCheck.run(keycloak: config.keycloak, tokens: tokens, client: client)
        health.recordCheck(result)
        return result
    }

    /// The last known provider state: the last `checkProvider()` result,
    /// unless a lookup failed since, and `.notChecked` before the first
    /// check. Never blocks on I/O.
    public var readiness: Result<String, IdentityProviderError> {
        health.readiness
    }
}
