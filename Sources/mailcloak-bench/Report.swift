// Adds up the threads' results and prints them.

#if canImport(Glibc)
import Glibc
#endif

struct Report {
    var options: BenchOptions
    var total = WorkerResult()
    /// Seconds over which throughput is computed.
    var elapsed: Double

    init(options: BenchOptions, results: [WorkerResult], measureStart: UInt64) {
        self.options = options
        for result in results {
            total.latencies.add(result.latencies)
            total.completed += result.completed
            total.failed += result.failed
            total.errors.merge(result.errors, uniquingKeysWith: +)
            total.replies.add(result.replies)
            total.mismatches += result.mismatches
            total.mismatchSamples += result.mismatchSamples
            total.lastReply = max(total.lastReply, result.lastReply)
            if let stalledAt = result.stalledAt { total.stalledAt = max(total.stalledAt ?? 0, stalledAt) }
            total.connections += result.connections
            total.handshakes += result.handshakes
            total.resumedHandshakes += result.resumedHandshakes
            total.negotiated = total.negotiated ?? result.negotiated
            total.scheduledUnsent += result.scheduledUnsent
            total.established += result.established
            total.openAtEnd += result.openAtEnd
            total.closedWhileHeld += result.closedWhileHeld
        }
        switch options.stop {
        case .duration(let seconds):
            let stopped = total.stalledAt.map { Double(max($0, measureStart) - measureStart) / 1e9 }
            elapsed = min(seconds, stopped ?? seconds)
        case .requests:
            elapsed = Double(max(total.lastReply, measureStart) - measureStart) / 1e9
        case .hold(let seconds):
            elapsed = seconds
        }
    }

    var text: String {
        var lines: [String] = []
        lines.append(
            "target \(options.target)  protocol \(options.wireProtocol.rawValue)  connections \(options.connections)"
                + "  threads \(options.threads)  warmup \(format(options.warmup)) s")
        if options.isHold {
            lines += holdLines
        } else {
            lines.append(
                "measured \(format(elapsed)) s  replies \(total.completed)  failed requests \(total.failed)")
            let rate = elapsed > 0 ? Double(total.completed) / elapsed : 0
            lines.append("throughput \(Int(rate.rounded())) requests/s")
            if let paced = options.rate {
                lines.append(
                    "paced at \(format(paced)) requests/s (open loop, latency from each scheduled send time);"
                        + " due but unsent at the end: \(total.scheduledUnsent)")
            }
        }
        if options.newConnectionPerRequest || options.tls != nil {
            lines.append(connectionLine)
        }

        let latencies = total.latencies
        lines.append(
            "latency us: p50 \(latencies.percentile(0.5))  p90 \(latencies.percentile(0.9))"
                + "  p99 \(latencies.percentile(0.99))  p99.9 \(latencies.percentile(0.999))"
                + "  max \(latencies.maxMicroseconds)  (percentiles within 1.6%)")

        lines.append("replies:")
        for entry in total.replies.entries.sorted(by: { $0.count > $1.count }) {
            lines.append("  \(pad(entry.count))  \(display(entry.reply))")
        }
        if total.replies.other > 0 { lines.append("  \(pad(total.replies.other))  (other replies)") }

        if total.errors.isEmpty {
            lines.append("errors: none")
        } else {
            lines.append("errors:")
            for (reason, count) in total.errors.sorted(by: { $0.value > $1.value }) {
                lines.append("  \(pad(count))  \(reason)")
            }
        }
        if total.stalledAt != nil, !options.isHold {
            lines.append("stopped early: no connect or reply succeeded for twice the timeout plus 1 s")
        }

        if options.expectFile != nil {
            lines.append("mismatches: \(total.mismatches)")
            for sample in total.mismatchSamples.prefix(10) {
                lines.append("  request \(sample.request + 1): expected \"\(sample.expected)\", received \"\(sample.received)\"")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The outcome of a hold: connections established, held, and still open at the end.
    private var holdLines: [String] {
        var lines = [
            "established \(total.established) of \(options.connections) connections"
                + " (connect\(options.tls != nil ? ", TLS handshake" : "") and one reply each)",
            "held idle \(format(elapsed)) s  open at the end \(total.openAtEnd)"
                + "  closed by the server while held \(total.closedWhileHeld)",
        ]
        if total.stalledAt != nil {
            lines.append("setup stopped early: no connect or reply succeeded for twice the timeout plus 1 s")
        }
        return lines
    }

    /// Connects and TLS handshakes in the measured time; printed with --tls or --new-connection-per-request.
    private var connectionLine: String {
        func perSecond(_ count: Int) -> Int { elapsed > 0 ? Int((Double(count) / elapsed).rounded()) : 0 }
        var line = "while measuring: connections \(total.connections) (\(perSecond(total.connections))/s)"
        if options.tls != nil {
            line += "  TLS handshakes \(total.handshakes) (\(perSecond(total.handshakes))/s)"
                + "  resumed \(total.resumedHandshakes) (\(perSecond(total.resumedHandshakes))/s)"
                + "  \(total.negotiated ?? "no handshake completed")"
        }
        if options.newConnectionPerRequest { line += "  latency below runs from connect to reply" }
        return line
    }

    /// Exit status: 1 when a reply differed from the expect file or no reply arrived, else 0.
    /// In hold mode it is also 1 when a connection was not established or did not stay open.
    var exitStatus: Int32 {
        if total.mismatches > 0 || total.completed == 0 { return 1 }
        if options.isHold, total.established < options.connections || total.openAtEnd < total.established {
            return 1
        }
        return 0
    }

    private func format(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }

    private func pad(_ count: Int) -> String {
        let text = String(count)
        return String(repeating: " ", count: max(0, 10 - text.count)) + text
    }

    /// Shows a reply on one line, in quotes, with newlines and control bytes escaped.
    private func display(_ reply: [UInt8]) -> String {
        var text = "\""
        for scalar in String(decoding: reply, as: UTF8.self).unicodeScalars {
            text += scalar.value < 0x20 || scalar == "\"" || scalar == "\\" ? scalar.escaped(asASCII: true) : String(scalar)
        }
        return text + "\""
    }
}
