// Percent-encoding for the URLs and form bodies sent to the identity
// provider. Only RFC 3986 unreserved characters stay literal, because a
// server decodes a literal `+` in a query or form value as a space.

/// Percent-encoding with the RFC 3986 unreserved set (`A-Z a-z 0-9 - . _ ~`).
enum PercentEncoding {
    /// Encodes `value` for use as a query value, a form value or a path
    /// segment: every byte of its UTF-8 form outside the unreserved set
    /// becomes `%XX` with upper-case hex digits.
    static func encode(_ value: String) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(value.utf8.count)
        for byte in value.utf8 {
            if isUnreserved(byte) {
                output.append(byte)
            } else {
                output.append(UInt8(ascii: "%"))
                output.append(hexDigit(byte >> 4))
                output.append(hexDigit(byte & 0x0F))
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Builds an `application/x-www-form-urlencoded` body. Spaces become
    /// `%20`, which every form decoder accepts, so one encoder serves both
    /// query strings and forms.
    static func formBody(_ fields: [(name: String, value: String)]) -> String {
        fields.map { "\(encode($0.name))=\(encode($0.value))" }.joined(separator: "&")
    }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") + nibble - 10
    }
}
