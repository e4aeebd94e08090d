// The list of metric families that /metrics publishes, in registration order.
// Instruments (counters, gauges, histograms) are registered once at start,
// one per fixed label set, and then updated without the registry. Values
// that other components already keep (store status, cache counters) are read
// at scrape time through collectors.
import Locking

/// The kind of a metric family, as the `# TYPE` line writes it.
public enum MetricType: String, Sendable {
    case counter
    case gauge
    case histogram
    case summary
}


/// One sample that a collector reports at scrape time.
public struct MetricSample: Sendable {
    /// Appended to the family name: empty, `_sum` or `_count`.
    public var suffix: String
    public var labels: [MetricLabel]
    public var value: Double

    public init(_ value: Double, labels: [MetricLabel] = [], suffix: String = "") {
        self.suffix = suffix
        self.labels = labels
        self.value = value
    }
}

/// A label name and its value.
public struct MetricLabel: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// Reads samples at scrape time; runs on the scraping thread.
public typealias MetricCollector = @Sendable () -> [MetricSample]

/// Metric families and their series; thread-safe.
public final class MetricsRegistry: Sendable {
    enum Series: Sendable {
        case counter([MetricLabel], Counter)
        case gauge([MetricLabel], Gauge)
        case histogram([MetricLabel], Histogram)
        case collector(MetricCollector)
    }

    struct Family: Sendable {
        let name: String
        let help: String
        let type: MetricType
        var series: [Series]
    }

    private let families = Locked<[Family]>([])

    public init() {}

    /// Registers and returns the counter of `name` with `labels`.
    public func counter(_ name: String, help: String, labels: [MetricLabel] = []) -> Counter {
        let counter = Counter()
        add(name, help: help, type: .counter, series: .counter(labels, counter))
        return counter
    }

    /// Registers and returns the gauge of `name` with `labels`.
    public func gauge(_ name: String, help: String, labels: [MetricLabel] = []) -> Gauge {
        let gauge = Gauge()
        add(name, help: help, type: .gauge, series: .gauge(labels, gauge))
        return gauge
    }

    /// Registers and returns the histogram of `name` with `labels` and bucket `upperBounds`.
    public func histogram(_ name: String, help: String, upperBounds: [Double],
                          labels: [MetricLabel] = []) -> Histogram {
        let histogram = Histogram(upperBounds: upperBounds)
        add(name, help: help, type: .histogram, series: .histogram(labels, histogram))
        return histogram
    }

    /// Registers a family whose samples `collector` reads at each scrape.
    public func collect(_ name: String, help: String, type: MetricType, collector: @escaping MetricCollector) {
        add(name, help: help, type: type, series: .collector(collector))
    }

    /// Renders every family in the Prometheus text exposition format 0.0.4.
    public func render() -> String {
        let current = families.withLock { $0 }
        var output = ""
        for family in current {
            PrometheusText.append(family, to: &output)
        }
        return output
    }

    /// Adds `series` to the family `name`, creating it on first use.
    ///
    /// - Important: A second registration of a name must repeat its help and type,
    ///   because one family has one `# HELP` and one `# TYPE` line.
    private func add(_ name: String, help: String, type: MetricType, series: Series) {
        precondition(PrometheusText.isValidMetricName(name), "invalid metric name \(name)")
        if case .counter(let labels, _) = series { Self.checkLabels(labels) }
        if case .gauge(let labels, _) = series { Self.checkLabels(labels) }
        if case .histogram(let labels, _) = series { Self.checkLabels(labels) }
        families.withLock { families in
            if let index = families.firstIndex(where: { $0.name == name }) {
                precondition(families[index].type == type && families[index].help == help,
                             "metric \(name) registered twice with a different type or help")
                families[index].series.append(series)
            } else {
                families.append(Family(name: name, help: help, type: type, series: [series]))
            }
        }
    }

    private static func checkLabels(_ labels: [MetricLabel]) {
        for label in labels {
            precondition(PrometheusText.isValidLabelName(label.name), "invalid label name \(label.name)")
        }
    }
}
