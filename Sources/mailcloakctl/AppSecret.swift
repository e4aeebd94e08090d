// App secrets: generated from /dev/urandom and hashed with argon2id
// (t=3, m=65536 KiB, p=1, 16-byte salt, 32-byte hash) into the PHC string
// `$argon2id$v=19$m=65536,t=3,p=1$salt$hash`, which Dovecot's {ARGON2ID}
// scheme verifies. One hash needs 64 MiB and, as an estimate, 0.1 to 0.2 s of
// CPU, so hashing belongs in this tool and never on a request path.
import CArgon2

#if canImport(Glibc)
import Glibc
#endif

enum AppSecret {
    static let timeCost: UInt32 = 3
    static let memoryCostKiB: UInt32 = 65536
    static let parallelism: UInt32 = 1
    static let saltLength = 16
    static let hashLength = 32
    static let generatedLength = 32
    static let minLength = 8
    /// Largest secret read from standard input, in bytes.
    static let maxLength = 1024

    /// Returns the argon2id PHC string for `secret` with a fresh random salt.
    static func hash(_ secret: String) throws(CLIError) -> String {
        let salt = try randomBytes(saltLength)
        let encodedLength = argon2_encodedlen(
            timeCost, memoryCostKiB, parallelism, UInt32(saltLength), UInt32(hashLength), Argon2_id)
        var encoded = [CChar](repeating: 0, count: encodedLength)
        let password = Array(secret.utf8)
        let status = password.withUnsafeBytes { passwordBuffer in
            salt.withUnsafeBytes { saltBuffer in
                argon2id_hash_encoded(
                    timeCost, memoryCostKiB, parallelism, passwordBuffer.baseAddress, passwordBuffer.count,
                    saltBuffer.baseAddress, saltBuffer.count, hashLength, &encoded, encodedLength)
            }
        }
        guard status == ARGON2_OK.rawValue else {
            throw .runtime("argon2id hashing failed: \(String(cString: argon2_error_message(status)))")
        }
        return String(decoding: encoded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Returns a new secret: 32 random bytes as unpadded base64url (43 characters).
    static func generate() throws(CLIError) -> String {
        base64URL(try randomBytes(generatedLength))
    }

    /// Reads a secret from standard input: up to `maxLength` bytes, one trailing newline removed.
    static func readFromStandardInput() throws(CLIError) -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while bytes.count <= maxLength {
            let count = read(0, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count < 0 { throw .runtime("cannot read the secret from standard input: \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            bytes += buffer[0..<count]
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        if bytes.count > maxLength { throw .runtime("secret on standard input is longer than \(maxLength) bytes") }
        if bytes.contains(0) || bytes.contains(UInt8(ascii: "\n")) {
            throw .runtime("secret on standard input must be one line without NUL bytes")
        }
        guard let secret = String(validating: bytes, as: UTF8.self) else {
            throw .runtime("secret on standard input is not valid UTF-8")
        }
        if secret.isEmpty { throw .runtime("secret on standard input is empty") }
        if secret.count < minLength {
            throw .runtime("secret on standard input is shorter than \(minLength) characters")
        }
        return secret
    }

    /// Reads `count` bytes from /dev/urandom.
    static func randomBytes(_ count: Int) throws(CLIError) -> [UInt8] {
        let descriptor = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .runtime("cannot open /dev/urandom: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let result = bytes.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress! + filled, count - filled)
            }
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else { throw .runtime("cannot read /dev/urandom: \(String(cString: strerror(errno)))") }
            filled += result
        }
        return bytes
    }

    /// Encodes bytes as base64url (RFC 4648 section 5) without padding.
    static func base64URL(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var text = ""
        var index = 0
        while index < bytes.count {
            let chunk = Array(bytes[index..<min(index + 3, bytes.count)])
            let value = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (16 - 8 * UInt32($1.offset)) }
            for position in 0...chunk.count {
                text.append(alphabet[Int((value >> (18 - 6 * UInt32(position))) & 0x3F)])
            }
            index += 3
        }
        return text
    }
}
