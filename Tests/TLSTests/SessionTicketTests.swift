// Session ticket keys shared through `tls.session_ticket_keys`: instances
// with the same key file resume each other's sessions, a rotation keeps
// tickets of the previous key usable, and a malformed file is refused with
// the line at fault.
import COpenSSL
import Config
import Foundation
import Reactor
import Testing

/// Writes `lines` to a new key file and returns its path.
private func keyFile(_ lines: [String]) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("tickets-\(UUID().uuidString)").path
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// 80 random bytes as 160 hexadecimal digits, as `openssl rand -hex 80` prints them.
private func randomKey() -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<80).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
}

/// Returns the ticket bytes of a client session, or nothing when it has none.
private func ticket(of session: OpaquePointer?) -> [UInt8] {
    var data: UnsafePointer<UInt8>?
    var length = 0
    SSL_SESSION_get0_ticket(session, &data, &length)
    guard let data else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: length))
}

private func server(ticketKeys path: String?, resumptionMaxAge: Double = 7200) throws -> TLSServer {
    var tls = Fixture.tlsConfig()
    tls.sessionTicketKeys = path
    tls.resumptionMaxAge = resumptionMaxAge
    return try TLSServer(Fixture.listenerConfig(tls: tls))
}

/// One request and its reply on a new connection to `server`, offering `session`.
private struct Visit {
    /// Kept open: freeing a connection before a clean TLS shutdown marks its
    /// session as not resumable, and the session is shared with `session`.
    let client: TLSClient
    let answered: Bool
    var resumed: Bool { client.isResumed }
    /// The session to offer next, freed with the visit.
    let session: OpaquePointer?

    init(_ server: TLSServer, offering session: OpaquePointer?) {
        client = TLSClient(port: server.port, certificate: "client-mx1.crt", key: "client-mx1.key", session: session)
        answered = client.request("ticket") == "ticket policy=true maps=alias cn=mx1 host=127.0.0.1"
        self.session = client.session()
    }

    func free() { SSL_SESSION_free(session) }
}

@Suite struct SessionTicketTests {
    @Test func sharedKeysResumeAcrossInstances() throws {
        let keys = try keyFile(["# current key first", randomKey(), "", randomKey()])
        let first = try server(ticketKeys: keys)
        defer { first.stop() }
        let second = try server(ticketKeys: keys)
        defer { second.stop() }
        let withoutKeys = try server(ticketKeys: nil)
        defer { withoutKeys.stop() }

        let issued = Visit(first, offering: nil)
        defer { issued.free() }
        let elsewhere = Visit(second, offering: issued.session)
        defer { elsewhere.free() }

        // A context without shared keys has random keys of its own: a full handshake, still served.
        let unshared = Visit(withoutKeys, offering: issued.session)
        defer { unshared.free() }

        #expect(issued.answered)
        #expect(!issued.resumed)
        #expect(elsewhere.answered)
        #expect(elsewhere.resumed)
        // Clients such as stunnel use a TLS 1.3 ticket once, so a resumed handshake must hand out a new one.
        let renewed = ticket(of: elsewhere.session) != ticket(of: issued.session)
        #expect(renewed)
        #expect(unshared.answered)
        #expect(!unshared.resumed)
    }

    /// Rotation as docs/configuration.md describes it: the new key moves to the
    /// first line and the old one stays second, so its tickets still resume.
    @Test func rotationKeepsPreviousKeyTickets() throws {
        let oldKey = randomKey()
        let newKey = randomKey()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tickets-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/ticket-keys"
        try (oldKey + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let rotating = try server(ticketKeys: path)
        defer { rotating.stop() }
        let newOnly = try server(ticketKeys: try keyFile([newKey]))
        defer { newOnly.stop() }

        let underOld = Visit(rotating, offering: nil)
        defer { underOld.free() }
        try (newKey + "\n" + oldKey + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        var tls = Fixture.tlsConfig()
        tls.sessionTicketKeys = path
        #expect(rotating.security.reload(Fixture.listenerConfig(tls: tls), reason: "test") == nil)
        let afterReload = Visit(rotating, offering: underOld.session)
        defer { afterReload.free() }
        // Resuming under the old key gave a new ticket under the new key, which a server with only that key accepts.
        let onNewKey = Visit(newOnly, offering: afterReload.session)
        defer { onNewKey.free() }
        let oldTicketOnNewKey = Visit(newOnly, offering: underOld.session)
        defer { oldTicketOnNewKey.free() }

        #expect(underOld.answered)
        #expect(!underOld.resumed)
        #expect(afterReload.answered)
        #expect(afterReload.resumed)
        #expect(onNewKey.answered)
        #expect(onNewKey.resumed)
        #expect(oldTicketOnNewKey.answered)
        #expect(!oldTicketOnNewKey.resumed)
    }

    /// Renewed tickets keep the time of the full handshake, so a client that
    /// keeps resuming still makes a full handshake, with its certificate
    /// checks, once resumption_max_age has passed since the last one.
    @Test func resumptionEndsAtMaxAgeOfFullHandshake() throws {
        let server = try server(ticketKeys: try keyFile([randomKey()]), resumptionMaxAge: 2)
        defer { server.stop() }

        let full = Visit(server, offering: nil)
        defer { full.free() }
        // Times are whole seconds: 1.5 s later the full handshake is 1 or 2 s old, within the bound.
        Thread.sleep(forTimeInterval: 1.5)
        let resumed = Visit(server, offering: full.session)
        defer { resumed.free() }
        Thread.sleep(forTimeInterval: 1.6)
        // 3 or 4 s after the full handshake, though only 1 or 2 s after the ticket was renewed.
        let expired = Visit(server, offering: resumed.session)
        defer { expired.free() }
        let renewed = ticket(of: resumed.session) != ticket(of: full.session)

        #expect(full.answered)
        #expect(resumed.answered)
        #expect(resumed.resumed)
        #expect(renewed)
        #expect(expired.answered)
        #expect(!expired.resumed)
    }

    @Test(arguments: [
        (["0011"], "line 1: invalid key, expected 160 hexadecimal digits (openssl rand -hex 80)"),
        (["\u{FEFF}" + String(repeating: "ab", count: 80)], "line 1: starts with a byte order mark; save the file without one"),
        (["# comment", String(repeating: "g", count: 160)], "line 2: invalid key, expected 160 hexadecimal digits (openssl rand -hex 80)"),
        ([String(repeating: "ab", count: 80), "  " + String(repeating: "ab", count: 16) + String(repeating: "cd", count: 64)],
         "line 2: duplicate key name (the first 16 bytes) of line 1"),
    ])
    func malformedKeyFileIsRejected(lines: [String], problem: String) throws {
        let path = try keyFile(lines)
        var tls = Fixture.tlsConfig()
        tls.sessionTicketKeys = path
        #expect(throws: TLSError("session ticket key file \(path) \(problem)")) { try TLSContext.load(tls) }
    }

    @Test func emptyLargeOrCrowdedFileIsRejected() throws {
        var tls = Fixture.tlsConfig()
        let empty = try keyFile(["# no key yet", ""])
        tls.sessionTicketKeys = empty
        #expect(throws: TLSError("no key in session ticket key file \(empty); add one made by openssl rand -hex 80")) { try TLSContext.load(tls) }

        let crowded = try keyFile((0..<17).map { _ in randomKey() })
        tls.sessionTicketKeys = crowded
        #expect(throws: TLSError("session ticket key file \(crowded) contains more than 16 keys; remove the oldest")) { try TLSContext.load(tls) }

        let oversized = try keyFile([String(repeating: "#", count: 70_000)])
        tls.sessionTicketKeys = oversized
        #expect(throws: TLSError("session ticket key file \(oversized) is larger than 64 KiB")) { try TLSContext.load(tls) }

        tls.sessionTicketKeys = "/nonexistent/ticket-keys"
        #expect(throws: TLSError("cannot read /nonexistent/ticket-keys: No such file or directory")) { try TLSContext.load(tls) }

        // A FIFO would block the reading thread until someone writes to it.
        let fifo = try keyFile([]) + ".fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        tls.sessionTicketKeys = fifo
        #expect(throws: TLSError("\(fifo) is not a regular file")) { try TLSContext.load(tls) }
    }
}
