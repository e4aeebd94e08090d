// Identity answers as one decision sees them: answers fetched for this
// request by a worker first, then the in-process cache. A miss in both is
// reported to the caller as a key to fetch, never fetched here, because the
// resolver runs on reactor threads that must not block.
import Model

/// Answers fetched for one request, by key, including failed fetches.
public typealias FetchedIdentities = [IdentityKey: Result<IdentityAnswer, IdentityLookupError>]

/// Why a decision could not be made from memory.
enum IdentityGap: Error {
    /// This key must be fetched from the provider first.
    case missing(IdentityKey)
    /// The provider could not answer for this key.
    case failed(IdentityKey, IdentityLookupError)
}

/// The identity answers one decision may use.
struct IdentityView {
    let directory: any IdentityDirectory
    let fetched: FetchedIdentities

    func answer(_ key: IdentityKey) throws(IdentityGap) -> IdentityAnswer {
        if let result = fetched[key] {
            switch result {
            case .success(let answer): return answer
            case .failure(let error): throw .failed(key, error)
            }
        }
        if let cached = directory.cachedAnswer(for: key) { return cached }
        throw .missing(key)
    }

    /// Returns the enabled user who logs in as `saslUsername`.
    ///
    /// A login name with an `@` may be a username (Keycloak can use email
    /// addresses as usernames) or the user's email address, so the username
    /// is tried first and the email second.
    func user(forLogin saslUsername: String) throws(IdentityGap) -> IdentityUser? {
        let login = saslUsername.lowercased()
        if case .found(let user) = try answer(.username(login)) { return user }
        guard login.contains("@"), let address = MailAddress(login) else { return nil }
        if case .found(let user) = try answer(.email(address.description)) { return user }
        return nil
    }

    /// Reports whether `address` is some enabled user's primary address.
    func isPrimaryAddress(_ address: MailAddress) throws(IdentityGap) -> Bool {
        if case .found = try answer(.email(address.description)) { return true }
        return false
    }
}
