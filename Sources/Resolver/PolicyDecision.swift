// The decision table of the policy service. Recipient checks run at the RCPT
// stage; sender checks run at RCPT (Postfix's default smtpd_delay_reject=yes
// evaluates sender restrictions there) and at MAIL (smtpd_delay_reject=no).
import Config
import Model
import PolicyProtocol

/// One policy request evaluated against one snapshot.
struct PolicyDecision {
    let request: PolicyRequest
    let snapshot: Snapshot
    let identities: IdentityView
    let config: PolicyConfig

    private var isAuthenticated: Bool { !request.saslUsername.isEmpty }

    /// Checks the recipient, then the sender.
    ///
    /// When the provider lookup for the recipient fails and `failureMode` is
    /// `.dunno`, the sender check still runs: failing open must not skip
    /// checks that need no provider, such as an unauthenticated client using
    /// a local sender. If the sender check passes, the recipient's failure is
    /// rethrown so that the caller logs it and applies the failure mode.
    func recipientStage() throws(IdentityGap) -> PolicyAction {
        let recipientAction: PolicyAction
        do {
            recipientAction = try recipientCheck()
        } catch {
            guard case .failed = error, config.failureMode == .dunno else { throw error }
            let senderAction = try senderCheck()
            guard senderAction == .dunno else { return senderAction }
            throw error
        }
        guard recipientAction == .dunno else { return recipientAction }
        return try senderCheck()
    }

    /// A recipient in a local domain must exist; others need authentication (no open relay).
    func recipientCheck() throws(IdentityGap) -> PolicyAction {
        let text = request.recipient ?? ""
        guard !text.isEmpty else { return .dunno }
        guard let address = MailAddress(text), snapshot.isLocalDomain(address.domain) else {
            return isAuthenticated ? .dunno : .recipientDomainNotLocal
        }
        let base = address.splittingExtension(delimiters: config.recipientDelimiter).base
        if snapshot.enabledAlias(address) != nil || snapshot.enabledAlias(base) != nil {
            return .dunno
        }
        return try identities.isPrimaryAddress(base) ? .dunno : .noSuchUser
    }

    /// Checks that the sender may be used by this client.
    func senderCheck() throws(IdentityGap) -> PolicyAction {
        let sender = request.sender ?? ""
        guard isAuthenticated else {
            guard let address = MailAddress(sender), snapshot.isLocalDomain(address.domain) else { return .dunno }
            return .localSenderRequiresAuth
        }
        let method = request.saslMethod.lowercased()
        let isOAuth = config.oauthMechanisms.contains(method)
        let isApp = config.appMechanisms.contains(method)
        guard isOAuth || isApp else { return .unsupportedAuthMethod }
        if sender.isEmpty {
            return config.allowAuthenticatedNullSender ? .dunno : .senderNotOwned
        }
        guard let address = MailAddress(sender) else { return .senderNotOwned }
        return isOAuth ? try userSenderCheck(address) : appSenderCheck(address)
    }

    /// An OAuth user may send as the primary address or an alias the user owns,
    /// each with or without an address extension.
    private func userSenderCheck(_ address: MailAddress) throws(IdentityGap) -> PolicyAction {
        guard let user = try identities.user(forLogin: request.saslUsername) else { return .senderNotOwned }
        let base = address.splittingExtension(delimiters: config.recipientDelimiter).base
        if let primary = user.email, primary == address || primary == base { return .dunno }
        for candidate in [address, base] {
            if let alias = snapshot.enabledAlias(candidate), alias.username.lowercased() == user.username {
                return .dunno
            }
        }
        return .senderNotOwned
    }

    /// An application may send only from the addresses on its allow-list.
    private func appSenderCheck(_ address: MailAddress) -> PolicyAction {
        guard let app = snapshot.apps[request.saslUsername.lowercased()], app.enabled else { return .senderNotOwned }
        let base = address.splittingExtension(delimiters: config.recipientDelimiter).base
        return app.senders.contains(address) || app.senders.contains(base) ? .dunno : .senderNotOwned
    }
}
