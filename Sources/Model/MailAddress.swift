// Mail address handling shared by the resolver, the store and the admin CLI:
// case folding, quoted local parts and address extensions. Addresses are
// compared in one canonical form everywhere: local part and domain folded to
// lower case, quotes and backslash escapes removed from the local part.

/// An address split into local part and domain, in canonical (folded) form.
public struct MailAddress: Hashable, Sendable, CustomStringConvertible {
    public let localPart: String
    public let domain: String

    /// Parses `local@domain`, splitting at the last `@`.
    ///
    /// Returns nil for an empty string, a missing `@`, an empty local part or
    /// an empty domain. The local part may be quoted (`"john doe"@example.com`)
    /// and may contain any UTF-8; the result is folded to lower case.
    public init?(_ text: String) {
        guard let at = text.lastIndex(of: "@") else { return nil }
        let rawLocal = text[text.startIndex..<at]
        var rawDomain = text[text.index(after: at)...]
        if rawDomain.hasSuffix(".") { rawDomain = rawDomain.dropLast() }
        let local = MailAddress.unquote(rawLocal)
        guard !local.isEmpty, !rawDomain.isEmpty, !rawDomain.contains("@") else { return nil }
        self.localPart = local.lowercased()
        self.domain = rawDomain.lowercased()
    }

    public init(localPart: String, domain: String) {
        self.localPart = localPart.lowercased()
        self.domain = domain.lowercased()
    }

    public var description: String { "\(localPart)@\(domain)" }

    /// Splits off an address extension.
    ///
    /// The extension starts at the first character of the local part that is
    /// one of `delimiters` (Postfix's `recipient_delimiter`). A delimiter in
    /// the first position does not start an extension, so `+owner@` stays whole.
    /// - Returns: the address without its extension, and the extension with its
    ///   delimiter (`+tag`), or nil when there is none.
    public func splittingExtension(delimiters: String) -> (base: MailAddress, extension: String?) {
        guard !delimiters.isEmpty,
            let index = localPart.firstIndex(where: { delimiters.contains($0) }),
            index != localPart.startIndex
        else { return (self, nil) }
        let base = MailAddress(localPart: String(localPart[..<index]), domain: domain)
        return (base, String(localPart[index...]))
    }

    /// Removes the quotes of a quoted local part and its backslash escapes.
    static func unquote(_ local: Substring) -> String {
        guard local.count >= 2, local.first == "\"", local.last == "\"" else { return String(local) }
        var out = ""
        var escaping = false
        for character in local.dropFirst().dropLast() {
            if escaping {
                out.append(character)
                escaping = false
            } else if character == "\\" {
                escaping = true
            } else {
                out.append(character)
            }
        }
        return out
    }
}

/// Folds a domain name to the canonical form used as snapshot key.
public func canonicalDomain(_ text: String) -> String {
    var domain = Substring(text)
    if domain.hasSuffix(".") { domain = domain.dropLast() }
    return domain.lowercased()
}
