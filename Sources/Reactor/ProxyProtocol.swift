// PROXY protocol version 2, the binary header a TCP load balancer sends
// before the client's bytes: it carries the real client address. Parsed with
// a size limit, before TLS starts, and only from configured balancers.
#if canImport(Glibc)
import Glibc
#endif

/// What a complete or partial PROXY v2 header says.
public enum ProxyHeader: Equatable, Sendable {
    /// The header is incomplete; this many bytes are needed in all.
    case needMore(Int)
    /// A proxied TCP connection from `address` (4 or 16 bytes) and `port`; `length` bytes long.
    case proxied(address: [UInt8], port: UInt16, length: Int)
    /// A connection of the balancer itself (health check): keep the socket's own address.
    case local(length: Int)
    /// Not a valid PROXY v2 header.
    case invalid(String)

    /// The 12-byte signature that starts every v2 header.
    public static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// Largest address block accepted (addresses plus TLVs).
    public static let maxAddressBlock = 512

    /// Parses the start of `bytes`.
    public static func parse(_ bytes: [UInt8]) -> ProxyHeader {
        let prefix = min(bytes.count, signature.count)
        guard Array(bytes[0..<prefix]) == Array(signature[0..<prefix]) else {
            return .invalid("no PROXY protocol v2 signature")
        }
        guard bytes.count >= 16 else { return .needMore(16) }
        let versionCommand = bytes[12]
        guard versionCommand >> 4 == 2 else { return .invalid("PROXY protocol version \(versionCommand >> 4), expected 2") }
        let blockLength = Int(bytes[14]) << 8 | Int(bytes[15])
        guard blockLength <= maxAddressBlock else {
            return .invalid("PROXY header address block of \(blockLength) bytes, limit \(maxAddressBlock)")
        }
        let total = 16 + blockLength
        guard bytes.count >= total else { return .needMore(total) }
        switch versionCommand & 0x0F {
        case 0: return .local(length: total)
        case 1: break
        default: return .invalid("unknown PROXY command \(versionCommand & 0x0F)")
        }
        let block = Array(bytes[16..<total])
        switch bytes[13] {
        case 0x11:
            guard block.count >= 12 else { return .invalid("PROXY TCP4 address block too short") }
            return .proxied(address: Array(block[0..<4]), port: UInt16(block[8]) << 8 | UInt16(block[9]), length: total)
        case 0x21:
            guard block.count >= 36 else { return .invalid("PROXY TCP6 address block too short") }
            return .proxied(address: Array(block[0..<16]), port: UInt16(block[32]) << 8 | UInt16(block[33]), length: total)
        case 0x00:
            return .local(length: total)
        default:
            return .invalid("unsupported PROXY address family \(bytes[13])")
        }
    }
}

/// Formats 4 or 16 address bytes and a port as `192.0.2.1:port` or `[2001:db8::1]:port`.
func describeAddress(_ address: [UInt8], port: UInt16) -> String {
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    let family = address.count == 16 ? AF_INET6 : AF_INET
    address.withUnsafeBytes { _ = inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
    let host = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return address.count == 16 ? "[\(host)]:\(port)" : "\(host):\(port)"
}

/// The 4 or 16 address bytes of an IPv4 or IPv6 socket address, or nil.
func addressBytes(_ storage: sockaddr_storage) -> [UInt8]? {
    var copy = storage
    return withUnsafePointer(to: &copy) { pointer in
        switch Int32(storage.ss_family) {
        case AF_INET:
            pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                withUnsafeBytes(of: address.pointee.sin_addr) { Array($0) }
            }
        case AF_INET6:
            pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                withUnsafeBytes(of: address.pointee.sin6_addr) { Array($0) }
            }
        default:
            nil
        }
    }
}
