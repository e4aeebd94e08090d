// Command-line options of mailcloak-bench and their checks.

/// The target, the workload and the length of the run.
struct BenchOptions: Sendable {
    enum Target: Sendable, CustomStringConvertible {
        case tcp(host: String, port: UInt16)
        case unix(path: String)

        var description: String {
            switch self {
            case .tcp(let host, let port): host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
            case .unix(let path): "unix:\(path)"
            }
        }
    }

    enum WireProtocol: String, Sendable {
        case policy
        case socketmap
    }

    /// When the measured run ends.
    enum Stop: Sendable {
        case duration(Double)
        case requests(Int)
        /// Hold mode: set up every connection with one request, keep them idle this many seconds, then close.
        case hold(seconds: Double)
    }

    /// The files for mutual TLS: the client's certificate and key, and the CA that verifies the server.
    struct TLSFiles: Sendable {
        var certificate: String
        var key: String
        var ca: String
        /// Sent as SNI and checked against the server certificate's names; nil checks the chain only.
        var serverName: String?
    }

    var target: Target
    var wireProtocol: WireProtocol
    var requestsFile: String
    var expectFile: String?
    var connections: Int
    var threads: Int
    var stop: Stop
    var warmup: Double
    /// Time allowed for a connect (with its TLS handshake) or for a reply, in seconds.
    var timeout: Double
    /// Mutual TLS on every connection; nil for plain connections.
    var tls: TLSFiles?
    /// Whether each connection carries one request and is then closed and opened again.
    var newConnectionPerRequest: Bool
    /// Whether a connection slot offers the TLS session of its previous connection.
    var resume: Bool
    /// Requests per second over all connections, each sent at its scheduled time (open loop).
    /// Nil sends the next request as soon as a connection has its reply (closed loop).
    var rate: Double?

    /// Whether the run keeps idle connections open (`--hold`) instead of measuring a request load.
    var isHold: Bool {
        if case .hold = stop { return true }
        return false
    }

    static let usage = """
        usage: mailcloak-bench --target tcp:HOST:PORT|unix:PATH --protocol policy|socketmap
                               --requests-file FILE --connections C (--duration SECONDS | --requests N)
                               [--rate R] [--warmup SECONDS] [--threads T] [--timeout SECONDS]
                               [--expect-file FILE] [--tls --cert FILE --key FILE --ca FILE [--server-name NAME]]
                               [--new-connection-per-request] [--resume]
               mailcloak-bench --target ... --protocol ... --requests-file FILE --hold N --hold-seconds SECONDS
                               [--threads T] [--timeout SECONDS] [--expect-file FILE] [--tls ...]

          --target         where to connect: tcp:127.0.0.1:10027, tcp:[::1]:10027 or unix:/path
          --protocol       policy (requests separated by blank lines) or socketmap (one "name key" per line)
          --requests-file  the requests, sent round-robin; lines starting with # are comments
          --connections    persistent connections, each with one request outstanding at a time
          --duration       seconds to measure after the warmup
          --requests       number of requests to measure after the warmup
          --rate           requests per second over all connections, open loop: each request has a scheduled
                           send time and its latency runs from that time, so a stall in the server shows in the
                           percentiles instead of slowing the load; a request whose time has come waits for a
                           free connection (default: no pacing, each connection sends its next request at once)
          --hold           hold mode: open N connections, complete the connect (and TLS handshake) and one
                           request on each, keep them open and idle, then close them; prints how many were
                           established and how many were still open at the end (replaces --connections,
                           --duration and --requests)
          --hold-seconds   seconds each thread keeps its connections idle once all of them are set up
          --warmup         seconds of load before measuring starts (default 0)
          --threads        threads driving the connections, each with its own epoll loop (default 1)
          --timeout        seconds allowed for a connect (with its TLS handshake) or a reply before it counts
                           as an error (default 10)
          --expect-file    one expected reply per request, in request order: the policy reply without its
                           blank line (action=DUNNO) or the socketmap payload (NOTFOUND, OK alice@example.com);
                           trailing spaces are ignored; any mismatch makes the exit status 1
          --tls            mutual TLS on every connection, with non-blocking handshakes on the same epoll loop
          --cert, --key    the client certificate (PEM, may include its chain) and its unencrypted key
          --ca             PEM bundle of the CAs that verify the server certificate
          --server-name    name sent as SNI and checked against the server certificate; without it only
                           the chain is verified
          --new-connection-per-request
                           connect (and handshake), send one request, read its reply, close; reports
                           connections and handshakes per second, and latency from connect to reply
          --resume         with --tls: offer each connection slot's previous TLS session (a ticket), and
                           report how many handshakes were resumed
        """

    /// Parses the arguments after the program name; returns an error message for bad usage.
    static func parse(_ arguments: [String]) -> Result<BenchOptions, BenchUsageError> {
        var values: [String: String] = [:]
        var rest = arguments[...]
        let known: Set = [
            "--target", "--protocol", "--requests-file", "--connections", "--duration", "--requests", "--warmup",
            "--threads", "--timeout", "--expect-file", "--cert", "--key", "--ca", "--server-name", "--rate",
            "--hold", "--hold-seconds",
        ]
        let switches: Set = ["--tls", "--new-connection-per-request", "--resume"]
        while let flag = rest.popFirst() {
            if flag == "--help" || flag == "-h" { return .failure(BenchUsageError(message: "")) }
            if switches.contains(flag) {
                values[flag] = ""
                continue
            }
            guard known.contains(flag) else { return .failure(BenchUsageError(message: "unknown option \(flag)")) }
            guard let value = rest.popFirst() else { return .failure(BenchUsageError(message: "\(flag) needs a value")) }
            values[flag] = value
        }
        do throws(BenchUsageError) {
            return .success(try BenchOptions(values))
        } catch {
            return .failure(error)
        }
    }

    private init(_ values: [String: String]) throws(BenchUsageError) {
        func required(_ flag: String) throws(BenchUsageError) -> String {
            guard let value = values[flag] else { throw BenchUsageError(message: "\(flag) is required") }
            return value
        }
        func number(_ flag: String, _ range: ClosedRange<Double>) throws(BenchUsageError) -> Double? {
            guard let text = values[flag] else { return nil }
            guard let value = Double(text), range.contains(value) else {
                throw BenchUsageError(message: "\(flag) \(text) is invalid, expected a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        func integer(_ flag: String, _ range: ClosedRange<Int>) throws(BenchUsageError) -> Int? {
            guard let text = values[flag] else { return nil }
            guard let value = Int(text), range.contains(value) else {
                throw BenchUsageError(message: "\(flag) \(text) is invalid, expected an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }

        target = try Self.target(try required("--target"))
        guard let wireProtocol = WireProtocol(rawValue: try required("--protocol")) else {
            throw BenchUsageError(message: "--protocol must be policy or socketmap")
        }
        self.wireProtocol = wireProtocol
        requestsFile = try required("--requests-file")
        expectFile = values["--expect-file"]
        let hold = try integer("--hold", 1...100_000)
        if hold != nil, values["--connections"] != nil {
            throw BenchUsageError(message: "--hold sets the number of connections; leave out --connections")
        }
        let connectionOption = try integer("--connections", 1...100_000)
        connections = hold ?? connectionOption ?? 1
        threads = try integer("--threads", 1...256) ?? 1
        if threads > connections {
            throw BenchUsageError(message: "--threads \(threads) exceeds --connections \(connections)")
        }
        warmup = try number("--warmup", 0...3600) ?? 0
        timeout = try number("--timeout", 0.001...3600) ?? 10

        newConnectionPerRequest = values["--new-connection-per-request"] != nil
        resume = values["--resume"] != nil
        rate = try number("--rate", 0.001...100_000_000)
        let duration = try number("--duration", 0.001...86_400)
        let requests = try integer("--requests", 1...1_000_000_000)
        let holdSeconds = try number("--hold-seconds", 0...86_400)
        stop = try Self.stop(hold: hold, duration: duration, requests: requests, holdSeconds: holdSeconds)
        if isHold, rate != nil || newConnectionPerRequest || warmup > 0 {
            throw BenchUsageError(message: "--hold cannot be combined with --rate, --warmup or --new-connection-per-request")
        }
        if rate != nil && newConnectionPerRequest {
            throw BenchUsageError(message: "--rate paces persistent connections; leave out --new-connection-per-request")
        }
        tls = try Self.tlsFiles(values)
        if resume && tls == nil { throw BenchUsageError(message: "--resume needs --tls") }
    }

    private static func stop(hold: Int?, duration: Double?, requests: Int?,
                             holdSeconds: Double?) throws(BenchUsageError) -> Stop {
        if hold != nil {
            guard duration == nil, requests == nil else {
                throw BenchUsageError(message: "--hold cannot be combined with --duration or --requests")
            }
            guard let holdSeconds else { throw BenchUsageError(message: "--hold needs --hold-seconds") }
            return .hold(seconds: holdSeconds)
        }
        if holdSeconds != nil { throw BenchUsageError(message: "--hold-seconds needs --hold") }
        switch (duration, requests) {
        case (let seconds?, nil): return .duration(seconds)
        case (nil, let count?): return .requests(count)
        default: throw BenchUsageError(message: "give exactly one of --duration and --requests")
        }
    }

    private static func tlsFiles(_ values: [String: String]) throws(BenchUsageError) -> TLSFiles? {
        let fileFlags = ["--cert", "--key", "--ca", "--server-name"]
        guard values["--tls"] != nil else {
            if let flag = fileFlags.first(where: { values[$0] != nil }) {
                throw BenchUsageError(message: "\(flag) needs --tls")
            }
            return nil
        }
        guard let certificate = values["--cert"], let key = values["--key"], let ca = values["--ca"] else {
            throw BenchUsageError(message: "--tls needs --cert, --key and --ca")
        }
        if let name = values["--server-name"], name.isEmpty || name.utf8.count > 253 {
            throw BenchUsageError(message: "--server-name \"\(name)\" is invalid, expected a DNS name or an IP address")
        }
        return TLSFiles(certificate: certificate, key: key, ca: ca, serverName: values["--server-name"])
    }

    private static func target(_ text: String) throws(BenchUsageError) -> Target {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/"), path.utf8.count <= 107 else {
                throw BenchUsageError(message: "--target \(text): expected unix: and an absolute path of at most 107 bytes")
            }
            return .unix(path: path)
        }
        let invalid = BenchUsageError(message: "--target \(text) is invalid, expected tcp:HOST:PORT, tcp:[IPv6]:PORT or unix:/path")
        guard text.hasPrefix("tcp:"), let colon = text.lastIndex(of: ":"), colon > text.index(text.startIndex, offsetBy: 3)
        else { throw invalid }
        var host = String(text[text.index(text.startIndex, offsetBy: 4)..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            throw invalid
        }
        guard !host.isEmpty, let port = UInt16(text[text.index(after: colon)...]), port > 0 else { throw invalid }
        return .tcp(host: host, port: port)
    }
}

/// A command-line mistake. An empty message prints the usage text alone.
struct BenchUsageError: Error {
    var message: String
}
