// The PostgreSQL error counter on /metrics: a daemon whose database address
// refuses connections counts every failed attempt in
// mailcloak_postgres_errors_total, beside the mailcloak_store_error gauge.

import Foundation
import Testing

@Suite(.serialized)
struct ErrorCounterEndToEnd {
    @Test func postgresErrorCounterGrows() throws {
        let settings = try StackSettings.fromEnvironment()
        let closedPort = try TestEnvironment.freePorts(count: 1)
        let url = "postgresql://mailcloak@127.0.0.1:\(closedPort)/none?connect_timeout=1"
        let daemon = try MetricsDaemon.start(settings: settings, databaseURL: url)
        defer { daemon.stop() }

        _ = try daemon.waitForHTTP("/metrics", timeout: 20)
        var first: Double?
        var later: Double?
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let value = try Self.counter(in: daemon.get("/metrics").body)
            if first == nil, let value, value >= 1 { first = value }
            if let start = first, let value, value > start {
                later = value
                break
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        let scrape = try daemon.get("/metrics").body

        #expect(first != nil)
        #expect(later != nil)
        #expect(scrape.contains("# TYPE mailcloak_postgres_errors_total counter\n"))
        #expect(scrape.contains("\nmailcloak_store_error 1\n"))
    }

    /// Returns the value of mailcloak_postgres_errors_total in a scrape, or nil when it is absent.
    static func counter(in scrape: String) -> Double? {
        let prefix = "mailcloak_postgres_errors_total "
        guard let line = scrape.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
        return Double(line.dropFirst(prefix.count))
    }
}
