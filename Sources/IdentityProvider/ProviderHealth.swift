// The last known state of the identity provider, for readiness probes:
// the outcome of the last full check, overridden by a later failed lookup
// until a lookup succeeds again.
import Locking

/// Combines check results and lookup outcomes into one readiness state.
final class ProviderHealth: Sendable {
    private struct State {
        var check: Result<String, IdentityProviderError>?
        var lookupFailure: String?
    }

    private let state = Locked(State())

    func recordCheck(_ result: Result<String, IdentityProviderError>) {
        state.withLock {
            $0.check = result
            if case .success = result { $0.lookupFailure = nil }
        }
    }

    func recordLookupSuccess() {
        state.withLock { $0.lookupFailure = nil }
    }

    func recordLookupFailure(reason: String) {
        state.withLock { $0.lookupFailure = reason }
    }

    /// A failed check wins over everything, because lookups can succeed
    /// while returning wrong answers (a service account without view-users
    /// gets empty user lists). Then a failed lookup since the last success.
    var readiness: Result<String, IdentityProviderError> {
        state.withLock { state in
            guard let check = state.check else { return .failure(.notChecked) }
            if case .failure = check { return check }
            if let reason = state.lookupFailure { return .failure(.providerUnavailable(reason: reason)) }
            return check
        }
    }
}
