// The socketmap tables: `alias` for virtual_alias_maps, `domain` for
// virtual_mailbox_domains and `mailbox` for virtual_mailbox_maps. Postfix
// looks a returned alias target up again, so a target must never map to
// itself, and bare-domain keys must never match an address.
import Config
import Model
import Socketmap

/// Socketmap lookups against one snapshot.
struct SocketmapLookup {
    let snapshot: Snapshot
    let identities: IdentityView
    let config: PolicyConfig

    func reply(map: String, key: String) throws(IdentityGap) -> SocketmapReply {
        switch map {
        case "alias": aliasTarget(key).map(SocketmapReply.ok) ?? .notFound
        case "domain": snapshot.isLocalDomain(key) ? .ok(canonicalDomain(key)) : .notFound
        case "mailbox": try mailbox(key).map(SocketmapReply.ok) ?? .notFound
        default: .perm("unknown map \(map)")
        }
    }

    /// Rewrites an alias to `username@aliasdomain`, keeping an address extension.
    func aliasTarget(_ key: String) -> String? {
        guard let address = MailAddress(key), snapshot.isLocalDomain(address.domain) else { return nil }
        let target: String
        if let alias = snapshot.enabledAlias(address) {
            target = Self.deliveryAddress(alias, extension: nil)
        } else {
            let (base, addressExtension) = address.splittingExtension(delimiters: config.recipientDelimiter)
            guard let addressExtension, let alias = snapshot.enabledAlias(base) else { return nil }
            target = Self.deliveryAddress(alias, extension: addressExtension)
        }
        // A target equal to the key would make Postfix expand it forever.
        return MailAddress(target) == address ? nil : target
    }

    /// Returns the canonical address when it is a user's primary address or an enabled alias.
    func mailbox(_ key: String) throws(IdentityGap) -> String? {
        guard let address = MailAddress(key), snapshot.isLocalDomain(address.domain) else { return nil }
        let base = address.splittingExtension(delimiters: config.recipientDelimiter).base
        if snapshot.enabledAlias(address) != nil || snapshot.enabledAlias(base) != nil {
            return address.description
        }
        return try identities.isPrimaryAddress(base) ? address.description : nil
    }

    /// The address an alias delivers to: the owner's username in the alias's
    /// domain, or the username itself when it is already an address.
    static func deliveryAddress(_ alias: AliasEntry, extension addressExtension: String?) -> String {
        let suffix = addressExtension ?? ""
        if let owner = MailAddress(alias.username), alias.username.contains("@") {
            return "\(owner.localPart)\(suffix)@\(owner.domain)"
        }
        return "\(alias.username.lowercased())\(suffix)@\(alias.address.domain)"
    }
}
