// Picks the answer for one lookup key from the users Keycloak returned.
// Keycloak's own filtering is not trusted: equality is re-checked here,
// because a server that ignores exact=true matches substrings.
import Model

/// The answer for one key, chosen from a user list.
struct KeycloakUserSelection: Equatable {
    var answer: IdentityAnswer
    /// Enabled users that match the key; more than one is a data problem
    /// that the caller reports.
    var enabledMatches: [String]
    /// Users whose queried field equals the key, enabled or not. Zero on a
    /// full page means the page may have cut the match off.
    var fieldMatches: Int

    /// Chooses the answer for `key` from `users`.
    ///
    /// Only users with `enabled == true` count. When `requireEmailVerified`
    /// is set, a user whose `emailVerified` is not true has no email: it
    /// matches no email key and is returned without an address.
    ///
    /// Several enabled users can share one email when the realm allows
    /// duplicate emails. The answer is then found, with the first by
    /// username: every one of them proves the address exists, so rejecting
    /// mail for it would be wrong, and the username order makes the choice
    /// the same on every instance and every call, which keeps sender
    /// ownership decisions stable.
    init(users: [KeycloakUserRepresentation], key: IdentityKey, requireEmailVerified: Bool) {
        func usableEmail(_ user: KeycloakUserRepresentation) -> String? {
            guard let email = user.email, !email.isEmpty else { return nil }
            if requireEmailVerified && user.emailVerified != true { return nil }
            return email.lowercased()
        }

        let matching: [KeycloakUserRepresentation]
        switch key {
        case .email(let value):
            fieldMatches = users.filter { $0.email?.lowercased() == value }.count
            matching = users.filter { $0.enabled && usableEmail($0) == value }
        case .username(let value):
            fieldMatches = users.filter { $0.username.lowercased() == value }.count
            matching = users.filter { $0.enabled && $0.username.lowercased() == value }
        }
        let ordered = matching.sorted { $0.username.lowercased() < $1.username.lowercased() }
        enabledMatches = ordered.map { $0.username.lowercased() }
        guard let chosen = ordered.first else {
            answer = .notFound
            return
        }
        let address = usableEmail(chosen).flatMap { MailAddress($0) }
        answer = .found(IdentityUser(username: chosen.username, email: address))
    }
}
