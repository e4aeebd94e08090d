// Loads the metrics section. `listen` takes a numeric address and a port,
// `127.0.0.1:9464` or `[::1]:9464`, because the endpoint must not depend on
// name resolution at start. `enabled: false` turns the endpoint off.
#if canImport(Glibc)
import Glibc
#endif

extension ConfigLoader {
    static func metricsSection(_ node: YAMLNode) throws(ConfigError) -> MetricsConfig {
        let section = try mapping(node, path: "metrics")
        var metrics = MetricsConfig()
        try section.readBool("enabled", into: &metrics.enabled)
        if let node = section.node("listen") {
            let path = section.path("listen")
            let text = try string(node, path: path)
            guard let (host, port) = parseMetricsAddress(text) else {
                throw invalid(node, path, expected: "a numeric address and port, such as 127.0.0.1:9464 or [::1]:9464")
            }
            metrics.host = host
            metrics.port = port
        }
        return metrics
    }

    /// Splits `HOST:PORT` or `[HOST]:PORT` into a numeric address and a port, or returns nil.
    static func parseMetricsAddress(_ text: String) -> (String, UInt16)? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        let isBracketed = host.hasPrefix("[") && host.hasSuffix("]")
        if isBracketed { host = String(host.dropFirst().dropLast()) }
        guard let port = UInt16(text[text.index(after: colon)...]) else { return nil }

        var buffer = [UInt8](repeating: 0, count: 16)
        if isBracketed {
            guard inet_pton(AF_INET6, host, &buffer) == 1 else { return nil }
        } else {
            guard inet_pton(AF_INET, host, &buffer) == 1 else { return nil }
        }
        return (host, port)
    }
}
