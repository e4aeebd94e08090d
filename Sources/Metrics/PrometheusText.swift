// Writes metric families in the Prometheus text exposition format 0.0.4:
// a `# HELP` and a `# TYPE` line per family, then one line per sample.
// HELP text escapes backslash and newline; label values also escape the
// double quote. Histograms write cumulative `_bucket` lines with an `le`
// label, ending with `le="+Inf"`, then `_sum` and `_count`.

/// The text exposition format's writer and its name rules.
enum PrometheusText {
    /// The `Content-Type` of a scrape response.
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    static func append(_ family: MetricsRegistry.Family, to output: inout String) {
        output += "# HELP \(family.name) \(escapeHelp(family.help))\n"
        output += "# TYPE \(family.name) \(family.type.rawValue)\n"
        for series in family.series {
            switch series {
            case .counter(let labels, let counter):
                appendSample(family.name, labels, Double(counter.value), to: &output)
            case .gauge(let labels, let gauge):
                appendSample(family.name, labels, gauge.value, to: &output)
            case .histogram(let labels, let histogram):
                appendHistogram(family.name, labels, histogram.snapshot, to: &output)
            case .collector(let collector):
                for sample in collector() {
                    appendSample(family.name + sample.suffix, sample.labels, sample.value, to: &output)
                }
            }
        }
    }

    static func appendHistogram(_ name: String, _ labels: [MetricLabel], _ snapshot: HistogramSnapshot,
                                to output: inout String) {
        for (bound, count) in zip(snapshot.upperBounds, snapshot.cumulativeCounts) {
            appendSample(name + "_bucket", labels + [MetricLabel("le", formatValue(bound))], Double(count),
                         to: &output)
        }
        appendSample(name + "_bucket", labels + [MetricLabel("le", "+Inf")], Double(snapshot.count), to: &output)
        appendSample(name + "_sum", labels, snapshot.sum, to: &output)
        appendSample(name + "_count", labels, Double(snapshot.count), to: &output)
    }

    static func appendSample(_ name: String, _ labels: [MetricLabel], _ value: Double, to output: inout String) {
        output += name
        if !labels.isEmpty {
            output += "{"
            output += labels.map { "\($0.name)=\"\(escapeLabelValue($0.value))\"" }.joined(separator: ",")
            output += "}"
        }
        output += " " + formatValue(value) + "\n"
    }

    /// Formats a sample value: whole numbers without a fraction, `+Inf`, `-Inf` and `NaN` as Prometheus spells them.
    static func formatValue(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    static func escapeHelp(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    static func escapeLabelValue(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\"": escaped += "\\\""
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// Returns whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    static func isValidMetricName(_ name: String) -> Bool {
        isValidName(name, extra: UInt8(ascii: ":"))
    }

    /// Returns whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*` and does not start with the reserved `__`.
    static func isValidLabelName(_ name: String) -> Bool {
        isValidName(name, extra: nil) && !name.hasPrefix("__")
    }

    private static func isValidName(_ name: String, extra: UInt8?) -> Bool {
        guard let first = name.utf8.first else { return false }
        func isLetter(_ byte: UInt8) -> Bool {
            (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z") || byte == UInt8(ascii: "_")
                || byte == extra
        }
        guard isLetter(first) else { return false }
        return name.utf8.allSatisfy { isLetter($0) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) }
    }
}
