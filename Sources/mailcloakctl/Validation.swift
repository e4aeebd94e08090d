// Checks and canonical forms of the values mailcloakctl writes: domain
// names, addresses, usernames and app ids. The limits follow RFC 5321
// (64-octet local part, 254-octet address) and DNS (253-octet name,
// 63-octet labels).
import Model

enum Validation {
    /// What Swift puts in place of bytes that are not UTF-8 when it reads the command line.
    static let replacementCharacter: Unicode.Scalar = "\u{FFFD}"

    static let maxUsernameLength = 255
    static let maxAppIDLength = 128

    /// Returns the canonical domain, or nil with the reason it is invalid.
    static func domain(_ text: String) -> (value: String?, reason: String) {
        if text.unicodeScalars.contains(replacementCharacter) { return (nil, "not valid UTF-8") }
        let domain = canonicalDomain(text)
        if domain.isEmpty { return (nil, "empty domain") }
        if domain.utf8.count > 253 { return (nil, "longer than 253 bytes") }
        for label in domain.split(separator: ".", omittingEmptySubsequences: false) {
            if label.isEmpty { return (nil, "empty label") }
            if label.utf8.count > 63 { return (nil, "label longer than 63 bytes") }
            if label.hasPrefix("-") || label.hasSuffix("-") { return (nil, "label starts or ends with -") }
            let valid = label.unicodeScalars.allSatisfy { scalar in
                scalar == "-" || scalar == "_" || scalar.properties.isAlphabetic || scalar.properties.numericType != nil
            }
            if !valid { return (nil, "only letters, digits, - and _ are allowed in a label") }
        }
        return (domain, "")
    }

    /// Returns the canonical address, or nil with the reason it is invalid.
    static func address(_ text: String) -> (value: MailAddress?, reason: String) {
        if text.unicodeScalars.contains(replacementCharacter) { return (nil, "not valid UTF-8") }
        guard let address = MailAddress(text) else { return (nil, "expected local-part@domain") }
        // Only a quoted local part ("a@b"@example.com) may contain @.
        if address.localPart.contains("@") && !text.hasPrefix("\"") {
            return (nil, "@ in the local part needs quotes")
        }
        if address.localPart.utf8.count > 64 { return (nil, "local part longer than 64 bytes") }
        if address.localPart.unicodeScalars.contains(where: isControlOrSpace) {
            return (nil, "local part contains a space or control character")
        }
        let (domain, reason) = Self.domain(address.domain)
        guard domain != nil else { return (nil, reason) }
        if address.description.utf8.count > 254 { return (nil, "longer than 254 bytes") }
        return (address, "")
    }

    /// Returns the username folded to lower case (as Keycloak stores it), or nil with a reason.
    static func username(_ text: String) -> (value: String?, reason: String) {
        if text.isEmpty { return (nil, "empty username") }
        if text.unicodeScalars.contains(replacementCharacter) { return (nil, "not valid UTF-8") }
        if text.utf8.count > maxUsernameLength { return (nil, "longer than \(maxUsernameLength) bytes") }
        if text.unicodeScalars.contains(where: isControlOrSpace) { return (nil, "contains a space or control character") }
        return (text.lowercased(), "")
    }

    /// Returns the app id folded to lower case, or nil with a reason.
    /// App ids are SASL usernames: ASCII letters, digits and `.-_@+`.
    static func appID(_ text: String) -> (value: String?, reason: String) {
        if text.isEmpty { return (nil, "empty app id") }
        if text.utf8.count > maxAppIDLength { return (nil, "longer than \(maxAppIDLength) bytes") }
        let valid = text.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || ".-_@+".unicodeScalars.contains(scalar))
        }
        if !valid { return (nil, "only ASCII letters, digits and . - _ @ + are allowed") }
        return (text.lowercased(), "")
    }

    private static func isControlOrSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value <= 0x20 || scalar.value == 0x7F || scalar.properties.isWhitespace
    }
}

/// Turns a validation result into the value or a usage error.
func validated<T>(_ result: (value: T?, reason: String), what: String, input: String, usage: String) throws(CLIError) -> T {
    guard let value = result.value else {
        throw .usage("invalid \(what) \"\(input)\": \(result.reason)", usage: usage)
    }
    return value
}
