// Exact exposition text for small registries: counters, gauges, histograms,
// collectors, escaping and number formatting.
import Testing
@testable import Metrics

@Test func registryRendersCountersAndGauges() {
    let registry = MetricsRegistry()
    let rejected = registry.counter(
        "mailcloak_requests_total", help: "Requests answered.", labels: [.init("service", "policy"), .init("decision", "reject")])
    _ = registry.counter(
        "mailcloak_requests_total", help: "Requests answered.", labels: [.init("service", "policy"), .init("decision", "dunno")])
    let open = registry.gauge("mailcloak_connections_open", help: "Open connections.")
    rejected.increment()
    rejected.increment(by: 2)
    open.set(4)
    open.add(-1.5)

    let expected = """
        # HELP mailcloak_requests_total Requests answered.
        # TYPE mailcloak_requests_total counter
        mailcloak_requests_total{service="policy",decision="reject"} 3
        mailcloak_requests_total{service="policy",decision="dunno"} 0
        # HELP mailcloak_connections_open Open connections.
        # TYPE mailcloak_connections_open gauge
        mailcloak_connections_open 2.5

        """
    #expect(registry.render() == expected)
}

@Test func registryRendersHistogramBuckets() {
    let registry = MetricsRegistry()
    let latency = registry.histogram(
        "mailcloak_request_duration_seconds", help: "Latency.", upperBounds: [0.001, 0.01, 0.1],
        labels: [.init("service", "socketmap")])
    latency.observe(0.0005)
    latency.observe(0.005)
    latency.observe(0.005)
    latency.observe(2)

    let expected = """
        # HELP mailcloak_request_duration_seconds Latency.
        # TYPE mailcloak_request_duration_seconds histogram
        mailcloak_request_duration_seconds_bucket{service="socketmap",le="0.001"} 1
        mailcloak_request_duration_seconds_bucket{service="socketmap",le="0.01"} 3
        mailcloak_request_duration_seconds_bucket{service="socketmap",le="0.1"} 3
        mailcloak_request_duration_seconds_bucket{service="socketmap",le="+Inf"} 4
        mailcloak_request_duration_seconds_sum{service="socketmap"} 2.0105
        mailcloak_request_duration_seconds_count{service="socketmap"} 4

        """
    #expect(registry.render() == expected)
}

@Test func registryRendersCollectorSamples() {
    let registry = MetricsRegistry()
    registry.collect("mailcloak_provider_call_duration_seconds", help: "Provider calls.", type: .summary) {
        [MetricSample(1.25, suffix: "_sum"), MetricSample(5, suffix: "_count")]
    }
    registry.collect("mailcloak_snapshot_rows", help: "Rows.", type: .gauge) {
        [MetricSample(7, labels: [.init("table", "domains")])]
    }

    let expected = """
        # HELP mailcloak_provider_call_duration_seconds Provider calls.
        # TYPE mailcloak_provider_call_duration_seconds summary
        mailcloak_provider_call_duration_seconds_sum 1.25
        mailcloak_provider_call_duration_seconds_count 5
        # HELP mailcloak_snapshot_rows Rows.
        # TYPE mailcloak_snapshot_rows gauge
        mailcloak_snapshot_rows{table="domains"} 7

        """
    #expect(registry.render() == expected)
}

@Test func registryEscapesHelpAndLabelValues() {
    let registry = MetricsRegistry()
    _ = registry.counter(
        "mailcloak_escape_total", help: "Back\\slash and\nnewline.", labels: [.init("listener", "a\"b\\c\nd")])

    let expected = """
        # HELP mailcloak_escape_total Back\\\\slash and\\nnewline.
        # TYPE mailcloak_escape_total counter
        mailcloak_escape_total{listener="a\\"b\\\\c\\nd"} 0

        """
    #expect(registry.render() == expected)
}

@Test(arguments: [
    (0.0, "0"), (3.0, "3"), (-2.0, "-2"), (0.25, "0.25"), (1e-05, "1e-05"), (1e20, "1e+20"),
    (Double.infinity, "+Inf"), (-Double.infinity, "-Inf"), (Double.nan, "NaN"),
])
func formatValueWritesPrometheusNumbers(value: Double, text: String) {
    #expect(PrometheusText.formatValue(value) == text)
}

@Test(arguments: [
    ("mailcloak_requests_total", true), ("a:b", true), ("_x", true), ("1abc", false), ("", false), ("a-b", false),
])
func metricNameRulesAcceptValidNames(name: String, valid: Bool) {
    #expect(PrometheusText.isValidMetricName(name) == valid)
}

@Test(arguments: [("service", true), ("le", true), ("__name", false), ("a:b", false), ("9x", false)])
func labelNameRulesAcceptValidNames(name: String, valid: Bool) {
    #expect(PrometheusText.isValidLabelName(name) == valid)
}

@Test func gaugeAddAccumulatesFractions() {
    let gauge = Gauge()
    gauge.add(0.5)
    gauge.add(0.25)
    #expect(gauge.value == 0.75)
}
