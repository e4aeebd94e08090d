// The JSON documents mailcloak reads from Keycloak (user lists, token
// responses, OAuth error bodies) and the decoding step that turns any
// malformed body into a readable reason instead of a crash or a guess.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The fields of Keycloak's UserRepresentation that lookups use. Keycloak
/// always sends `username` and `enabled`; a body without them is not a
/// user list, so decoding fails instead of guessing.
struct KeycloakUserRepresentation: Decodable, Equatable, Sendable {
    var username: String
    var email: String?
    var enabled: Bool
    var emailVerified: Bool?
}

/// A successful token endpoint response.
struct KeycloakTokenResponse: Decodable, Sendable {
    var accessToken: String
    var expiresIn: Int
    var tokenType: String?

    enum CodingKeys: String, CodingKey {
        case accessToken = "access_token"
        case expiresIn = "expires_in"
        case tokenType = "token_type"
    }
}

/// An OAuth 2.0 error body (`{"error": ..., "error_description": ...}`).
struct OAuthErrorResponse: Decodable, Sendable {
    var error: String
    var errorDescription: String?

    enum CodingKeys: String, CodingKey {
        case error
        case errorDescription = "error_description"
    }
}

/// Decodes bodies from the identity provider. Errors are reasons fit for a
/// log line: they name the JSON path and never quote more than a short,
/// sanitized excerpt of the body.
enum KeycloakJSON {
    /// Decodes `body` as `T`.
    /// - Throws: a reason saying whether the body was no JSON at all (an
    ///   HTML page, plain text) or JSON of an unexpected shape.
    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8]) throws(KeycloakDecodingError) -> T {
        guard looksLikeJSON(body) else {
            throw KeycloakDecodingError(reason: describeNonJSON(body))
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body))
        } catch let error as DecodingError {
            throw KeycloakDecodingError(reason: describe(error))
        } catch {
            throw KeycloakDecodingError(reason: "invalid JSON")
        }
    }

    /// Describes a body for an error message: its kind and a short excerpt.
    static func describeBody(_ body: [UInt8]) -> String {
        if body.isEmpty { return "an empty body" }
        return looksLikeJSON(body) ? "JSON \(excerpt(body))" : describeNonJSON(body)
    }

    private static func firstSignificantByte(_ body: [UInt8]) -> UInt8? {
        body.first { !isWhitespace($0) }
    }

    private static func looksLikeJSON(_ body: [UInt8]) -> Bool {
        guard let first = firstSignificantByte(body) else { return false }
        return first == UInt8(ascii: "[") || first == UInt8(ascii: "{")
    }

    private static func describeNonJSON(_ body: [UInt8]) -> String {
        guard let first = firstSignificantByte(body) else { return "an empty body instead of JSON" }
        guard first == UInt8(ascii: "<") else { return "text instead of JSON: \(excerpt(body))" }
        if let title = htmlTitle(body) {
            return "an HTML page instead of JSON (title: \(sanitize(title)))"
        }
        return "an HTML page instead of JSON"
    }

    /// Returns the text between `<title>` and `</title>` in the first 4 KiB, if any.
    private static func htmlTitle(_ body: [UInt8]) -> String? {
        let head = body.prefix(4096).map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }
        guard let open = head.firstRange(of: Array("<title>".utf8)),
            let close = head[open.upperBound...].firstRange(of: Array("</title>".utf8))
        else { return nil }
        return String(decoding: body[open.upperBound..<close.lowerBound], as: UTF8.self)
    }

    /// Returns the first 60 bytes after leading whitespace, with control and
    /// non-ASCII bytes replaced by `?` and trailing whitespace removed.
    private static func excerpt(_ body: [UInt8]) -> String {
        let text = body.drop { isWhitespace($0) }
        var head = Array(text.prefix(60))
        while let last = head.last, isWhitespace(last) { head.removeLast() }
        let quoted = sanitize(String(decoding: head, as: UTF8.self))
        return text.count > 60 ? "\"\(quoted)...\"" : "\"\(quoted)\""
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
            || byte == UInt8(ascii: "\n")
    }

    private static func sanitize(_ text: String) -> String {
        let cleaned = text.unicodeScalars.prefix(80).map { scalar -> Character in
            (0x20..<0x7F).contains(scalar.value) ? Character(scalar) : "?"
        }
        return String(cleaned)
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(let type, let context):
            return "unexpected JSON shape: expected \(typeName(type)) at \(path(context.codingPath))"
        case .valueNotFound(let type, let context):
            return "unexpected JSON shape: null where \(typeName(type)) is required at \(path(context.codingPath))"
        case .keyNotFound(let key, let context):
            return "unexpected JSON shape: missing field \"\(key.stringValue)\" at \(path(context.codingPath))"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "invalid JSON" : "invalid value at \(path(context.codingPath))"
        @unknown default:
            return "undecodable JSON"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        let name = String(describing: type)
        if name.hasPrefix("Array") { return "an array" }
        if name.hasPrefix("Dictionary") { return "an object" }
        return "a value of type \(name)"
    }

    private static func path(_ codingPath: [any CodingKey]) -> String {
        guard !codingPath.isEmpty else { return "the top level" }
        return codingPath.map { key in
            key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)"
        }.joined()
    }
}

/// A body that could not be decoded, with a reason fit for a log line.
struct KeycloakDecodingError: Error, Equatable {
    var reason: String
}
