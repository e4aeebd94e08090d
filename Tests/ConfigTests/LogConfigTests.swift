// Tests of the log section: the output, syslog and sampling keys, and the
// exact error text for each kind of bad value.
import Testing

@testable import Config

private let minimalListener = "listeners:\n  - name: local\n    address: \"tcp:127.0.0.1:10027\"\n"

private func logError(_ body: String) -> String? {
    do {
        _ = try ConfigLoader.parse(yaml: minimalListener + "log:\n" + body)
        return nil
    } catch {
        return error.description
    }
}

@Test func logSectionReadsSyslogSettings() throws {
    let yaml = minimalListener + """
        log:
          output: syslog
          syslog_socket: /run/systemd/journal/dev-log
          syslog_facility: local5
          syslog_ident: mailcloak-eu1
          decision_sample_rate: 0.25
        """

    let log = try ConfigLoader.parse(yaml: yaml).log

    #expect(log.output == .syslog)
    #expect(log.syslogSocket == "/run/systemd/journal/dev-log")
    #expect(log.syslogFacility == "local5")
    #expect(log.syslogIdent == "mailcloak-eu1")
    #expect(log.decisionSampleRate == 0.25)
}

@Test func logSectionDefaults() throws {
    let log = try ConfigLoader.parse(yaml: minimalListener).log

    #expect(log.output == .stderr)
    #expect(log.syslogSocket == "/dev/log")
    #expect(log.syslogFacility == "mail")
    #expect(log.syslogIdent == "mailcloak")
    #expect(log.decisionSampleRate == 0)
}

@Test(arguments: [
    ("  output: file\n", "line 5: log.output: invalid value \"file\", expected stderr or syslog"),
    (
        "  syslog_socket: dev/log\n",
        "line 5: log.syslog_socket: invalid value \"dev/log\", expected an absolute path of at most 107 bytes,"
            + " such as /dev/log"
    ),
    (
        "  syslog_facility: local8\n",
        "line 5: log.syslog_facility: invalid value \"local8\", expected one of user, mail, daemon, local0, local1,"
            + " local2, local3, local4, local5, local6, local7"
    ),
    (
        "  syslog_facility: MAIL\n",
        "line 5: log.syslog_facility: invalid value \"MAIL\", expected one of user, mail, daemon, local0, local1,"
            + " local2, local3, local4, local5, local6, local7"
    ),
    (
        "  syslog_ident: \"mail cloak\"\n",
        "line 5: log.syslog_ident: invalid value \"mail cloak\", expected 1 to 32 printable ASCII characters"
            + " other than space, [, ] and :"
    ),
    (
        "  syslog_ident: \"mc:1\"\n",
        "line 5: log.syslog_ident: invalid value \"mc:1\", expected 1 to 32 printable ASCII characters"
            + " other than space, [, ] and :"
    ),
    ("  syslog_ident: \"\"\n", "line 5: log.syslog_ident: invalid value \"\", expected a non-empty string"),
    (
        "  decision_sample_rate: 1.5\n",
        "line 5: log.decision_sample_rate: invalid value \"1.5\", expected a number from 0.0 to 1.0"
    ),
    (
        "  decision_sample_rate: -0.1\n",
        "line 5: log.decision_sample_rate: invalid value \"-0.1\", expected a number from 0.0 to 1.0"
    ),
    (
        "  decision_sample_rate: half\n",
        "line 5: log.decision_sample_rate: invalid value \"half\", expected a number from 0.0 to 1.0"
    ),
])
func logSectionRejectsBadValue(body: String, message: String) {
    #expect(logError(body) == message)
}

@Test func syslogSocketAtPathLimitLoads() {
    let path = "/" + String(repeating: "s", count: 106)

    #expect(logError("  syslog_socket: \(path)\n") == nil)
    #expect(logError("  syslog_socket: \(path)s\n") != nil)
}
