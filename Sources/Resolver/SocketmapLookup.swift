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

    /// Builds the reply to one query.
    ///
    /// The alias and mailbox answers echo parts of the client's key, and
    /// `SocketmapReply.encoded` stops the process on a NUL byte or a payload
    /// over `SocketmapReply.maxPayloadSize`. So a key with a NUL byte, which
    /// Postfix never sends because its keys are C strings, and an answer too
    /// long for Postfix to read are both reported as not found.
    func reply(map: String, key: String) throws(IdentityGap) -> SocketmapReply {
        guard !key.utf8.contains(0) else { return .notFound }
        let reply: SocketmapReply =
            switch map {
            case "alias": aliasTarget(key).map(SocketmapReply.ok) ?? .notFound
            case "domain": snapshot.isLocalDomain(key) ? .ok(canonicalDomain(key)) : .notFound
            case "mailbox": try mailbox(key).map(SocketmapReply.ok) ?? .notFound
            default: .perm(Self.unknownMapReason(map))
            }
        if case .ok(let data) = reply, "OK ".utf8.count + data.utf8.count > SocketmapReply.maxPayloadSize {
            return .notFound
        }
        return reply
    }

    /// Builds the PERM reason for an unknown map name. The name comes from
    /// the client, so it is echoed only when it is 1 to 64 printable ASCII
    /// characters without spaces.
    static func unknownMapReason(_ map: String) -> String {
        let isPrintable = map.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
        guard !map.isEmpty, map.utf8.count <= 64, isPrintable else { return "unknown map" }
        return "unknown map \(map)"
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

    /// Returns the mailbox, the canonical address without its extension, when the address is a
    /// user's primary address or an enabled alias, so that `user+tag@` is delivered to `user@`.
    func mailbox(_ key: String) throws(IdentityGap) -> String? {
        guard let address = MailAddress(key), snapshot.isLocalDomain(address.domain) else { return nil }
        if snapshot.enabledAlias(address) != nil { return address.description }
        let base = address.splittingExtension(delimiters: config.recipientDelimiter).base
        if snapshot.enabledAlias(base) != nil { return base.description }
        return try identities.isPrimaryAddress(base) ? base.description : nil
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
