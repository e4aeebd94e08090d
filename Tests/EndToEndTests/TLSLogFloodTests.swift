// A flood of identical TLS handshake failures against `mailcloak serve`:
// the log gets the first failure with its peer, then one summary line with
// the exact number of failures held back, once the 10-second window ends.
// The suite starts its own TLS stack, so no other test's failures share the
// window.

import Testing

@Suite(.serialized, .tlsStack)
struct TLSLogFlood {
    /// Plain text on the TLS port fails the handshake with one fixed OpenSSL reason.
    static let reason = "error:0A00010B:SSL routines::wrong version number"

    @Test func handshakeFloodLogsLineAndSummary() throws {
        let stack = try TLSStack.require()
        let mark = stack.logMark()
        var peers: [String] = []

        for _ in 0..<50 {
            let plain = try #require(RawSocket(port: stack.tlsPort))
            peers.append(plain.peer)
            #expect(plain.send(Array("request=smtpd_access_policy\n\n".utf8)))
            #expect(plain.waitForClose(timeout: 10) == .closed(received: []))
        }
        // The window is 10 s and the daemon flushes ended windows once a second.
        let summary = stack.waitForEvent(
            after: mark, matching: ["event": "TLS handshake failed", "suppressed": "49"], timeout: 20)
        let lines = stack.events(after: mark, matching: ["event": "TLS handshake failed", "reason": Self.reason])

        #expect(lines.count == 2)
        #expect(lines.first?["peer"] == peers.first)
        #expect(lines.first?["suppressed"] == nil)
        #expect(summary?["reason"] == Self.reason)
        #expect(summary?["level"] == "warning")
        #expect(summary?["peer"] == nil)
    }
}
