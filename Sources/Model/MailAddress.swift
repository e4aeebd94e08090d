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
        // Work on UTF-8 bytes: this runs several times per request on the reactor threads.
        let bytes = text.utf8
        guard let at = bytes.lastIndex(of: UInt8(ascii: "@")) else { return nil }
        var domainEnd = bytes.endIndex
        let afterAt = bytes.index(after: at)
        if domainEnd > afterAt, bytes[bytes.index(before: domainEnd)] == UInt8(ascii: ".") {
            domainEnd = bytes.index(before: domainEnd)
        }
        let rawLocal = text[text.startIndex..<at]
        let rawDomain = text[afterAt..<domainEnd]
        guard !rawLocal.isEmpty, !rawDomain.isEmpty else { return nil }
        let local = rawLocal.utf8.first == UInt8(ascii: "\"") ? Substring(MailAddress.unquote(rawLocal)) : rawLocal
        guard !local.isEmpty else { return nil }
        self.localPart = foldCase(local)
        self.domain = foldCase(rawDomain)
    }

    public init(localPart: String, domain: String) {
        self.localPart = foldCase(Substring(localPart))
        self.domain = foldCase(Substring(domain))
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
        guard !delimiters.isEmpty, let index = extensionStart(delimiters: delimiters) else { return (self, nil) }
        let base = MailAddress(canonicalLocalPart: String(localPart[..<index]), domain: domain)
        return (base, String(localPart[index...]))
    }

    /// Finds the first delimiter after the first character of the local part.
    ///
    /// As Postfix does, `owner-list` and `list-request` are not split when `-`
    /// is a delimiter, because mailing-list software uses those names.
    private func extensionStart(delimiters: String) -> String.Index? {
        guard !localPart.isEmpty else { return nil }
        let start = localPart.index(after: localPart.startIndex)
        let found: String.Index?
        if delimiters.utf8.allSatisfy({ $0 < 0x80 }) {
            // ASCII delimiters never match inside a multi-byte UTF-8 sequence.
            found = localPart.utf8[start...].firstIndex(where: { delimiters.utf8.contains($0) })
        } else {
            found = localPart[start...].firstIndex(where: { delimiters.contains($0) })
        }
        guard let found else { return nil }
        if localPart[found] == "-" && (localPart.hasPrefix("owner-") || localPart.hasSuffix("-request")) {
            return nil
        }
        return found
    }

    /// Builds an address from parts that are already canonical.
    private init(canonicalLocalPart: String, domain: String) {
        self.localPart = canonicalLocalPart
        self.domain = domain
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
    if domain.utf8.last == UInt8(ascii: ".") { domain = domain.dropLast() }
    return foldCase(domain)
}

/// Folds `text` to lower case, without Unicode tables when it is ASCII.
func foldCase(_ text: Substring) -> String {
    var hasUpper = false
    for byte in text.utf8 {
        if byte >= 0x80 { return text.lowercased() }
        if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { hasUpper = true }
    }
    guard hasUpper else { return String(text) }
    let count = text.utf8.count
    return String(unsafeUninitializedCapacity: count) { buffer in
        var index = 0
        for byte in text.utf8 {
            buffer[index] = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            index += 1
        }
        return count
    }
}
