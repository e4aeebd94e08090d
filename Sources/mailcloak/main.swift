// The mailcloak daemon's command line: `serve`, `check` and `version`.
// Exit status: 0 success, 1 a runtime or check failure, 2 a usage error.
import Config
import IdentityProvider
import Log
import Reactor
import Server
import Store
#if canImport(Glibc)
import Glibc
#endif

let usage = """
    usage: mailcloak serve --config FILE
           mailcloak check --config FILE
           mailcloak version
    """

func fail(_ message: String, status: Int32 = 1) -> Never {
    Logger.shared.critical(message)
    exit(status)
}

func usageError(_ message: String) -> Never {
    let text = "mailcloak: \(message)\n\(usage)\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

func printLine(_ text: String) {
    let line = text + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}

/// Reads `--config FILE` from the arguments after the command.
func configPath(_ arguments: ArraySlice<String>) -> String {
    var rest = arguments
    var path: String?
    while let argument = rest.popFirst() {
        switch argument {
        case "--help", "-h":
            printLine(usage)
            exit(0)
        case "--config", "-c":
            guard let value = rest.popFirst() else { usageError("--config needs a file") }
            path = value
        default:
            usageError("unknown argument \(argument)")
        }
    }
    guard let path else { usageError("--config FILE is required") }
    return path
}

func loadConfiguration(_ path: String) -> Configuration {
    do {
        return try ConfigLoader.load(path: path)
    } catch {
        fail("configuration invalid: \(error)")
    }
}

/// Applies the log section to the shared logger. A syslog socket that cannot be set up leaves
/// the output as it was. One that is not writable is reported on stderr, because its lines are
/// dropped until it is.
func applyLogSettings(_ configuration: Configuration) {
    let log = configuration.log
    Logger.shared.level = LogLevel(name: log.level) ?? .info
    Logger.shared.format = LogFormat(rawValue: log.format) ?? .keyValue
    Logger.shared.decisionSampler.rate = log.decisionSampleRate
    guard log.output == .syslog else {
        Logger.shared.syslog = nil
        return
    }
    let facility = SyslogFacility(rawValue: log.syslogFacility) ?? .mail
    if let current = Logger.shared.syslog, current.path == log.syslogSocket, current.facility == facility,
        current.ident == log.syslogIdent
    {
        return
    }
    do {
        Logger.shared.syslog = try SyslogWriter(path: log.syslogSocket, facility: facility, ident: log.syslogIdent)
    } catch {
        Logger.shared.error("syslog output not set up, keeping the current output", [
            (.path, log.syslogSocket), (.error, error.description),
        ])
        return
    }
    if access(log.syslogSocket, W_OK) != 0 {
        let code = errno
        let stderrLogger = Logger(fileDescriptor: 2)
        stderrLogger.format = Logger.shared.format
        stderrLogger.warning("syslog socket not writable; log lines are dropped until it is", [
            (.path, log.syslogSocket), (.error, String(cString: strerror(code))),
        ])
    }
}

/// Validates the configuration and reports whether PostgreSQL and the identity provider answer.
func runCheck(_ path: String) -> Never {
    // The report goes to stdout; log lines of the parts it builds would only repeat it.
    Logger.shared.level = .critical
    let configuration: Configuration
    do {
        configuration = try ConfigLoader.load(path: path)
    } catch {
        printLine("configuration: FAILED (\(error))")
        exit(1)
    }
    printLine("configuration: ok (\(path), \(configuration.listeners.count) listener(s))")
    var healthy = true
    for listener in configuration.listeners {
        guard let tls = listener.tls else { continue }
        do {
            let context = try TLSContext.load(tls)
            let expiry = context.expiries.first.map { formatUTC($0.notAfter) } ?? "unknown"
            printLine("tls \(listener.name): ok (server certificate valid until \(expiry))")
        } catch {
            printLine("tls \(listener.name): FAILED (\(error))")
            healthy = false
        }
    }
    switch checkDatabase(config: configuration.database) {
    case .success(let text): printLine("database: ok (\(text))")
    case .failure(let error):
        printLine("database: FAILED (\(error))")
        healthy = false
    }
    switch checkIdentityProvider(config: configuration.identity) {
    case .success(let text): printLine("identity provider: ok (\(text))")
    case .failure(let error):
        printLine("identity provider: FAILED (\(error))")
        healthy = false
    }
    exit(healthy ? 0 : 1)
}

/// Reads the configuration file again and applies what can change at run time: log settings,
/// TLS material, access rules, PROXY protocol sources and the identity cache. Logs the changed
/// keys that were applied and those that wait for a restart, and returns the configuration in force.
func reload(_ server: MailcloakServer, path: String, running: Configuration) -> Configuration {
    Logger.shared.notice("SIGHUP received, reloading the configuration", [(.path, path)])
    let loaded: Configuration
    do {
        loaded = try ConfigLoader.load(path: path)
    } catch {
        Logger.shared.error("reload failed, keeping the running configuration", [
            (.path, path), (.error, String(describing: error)),
        ])
        return running
    }
    let changes = ConfigurationChanges(running: running, loaded: loaded)
    applyLogSettings(loaded)
    let failures = server.reloadSecurity(loaded)
    server.identities.reconfigureCache(loaded.identity.cache)
    var inForce = ConfigurationChanges.applying(loaded, to: running)
    if failures > 0 {
        // A listener whose TLS material failed to load keeps its old material, so the next
        // reload compares against that and reports the change again.
        inForce.listeners = running.listeners
    }
    let none = "none"
    Logger.shared.notice("configuration reloaded", [
        (.changed, changes.applied.isEmpty ? none : changes.applied.joined(separator: ",")),
        (.restartNeeded, changes.needRestart.isEmpty ? none : changes.needRestart.joined(separator: ",")),
        (.count, String(failures)),
    ])
    return inForce
}

/// Switches to `server.user` and `server.group` once the listeners are bound. Serving as root
/// without them ends the start unless `server.allow_root` is set. A failed switch ends the start.
func dropPrivileges(_ privileges: ServerPrivilegesConfig) {
    guard privileges.user != nil || privileges.group != nil else {
        if geteuid() == 0 {
            guard privileges.allowRoot else {
                fail("start failed: refusing to serve as root; set server.user, or server.allow_root: true")
            }
            Logger.shared.warning("serving as root because server.allow_root is set")
        }
        return
    }
    do {
        let (uid, gid) = try PrivilegeDrop.apply(user: privileges.user, group: privileges.group)
        Logger.shared.info("switched user and group", [
            (.user, privileges.user ?? String(uid)), (.value, "uid=\(uid) gid=\(gid)"),
        ])
    } catch {
        fail("start failed: \(error)")
    }
}

/// Reports, without waiting, whether SIGTERM or SIGINT is pending. Both are blocked in every
/// thread, so a pending one is taken here and not delivered later.
func receivedStopSignal() -> Bool {
    var stopSignals = sigset_t()
    sigemptyset(&stopSignals)
    sigaddset(&stopSignals, SIGTERM)
    sigaddset(&stopSignals, SIGINT)
    var noWait = timespec(tv_sec: 0, tv_nsec: 0)
    return sigtimedwait(&stopSignals, nil, &noWait) > 0
}

/// Runs the daemon until SIGTERM or SIGINT, then drains its connections for up to
/// `server.drain_timeout` and exits 0. A second SIGTERM or SIGINT ends the drain at once.
/// SIGHUP during the drain waits until it ends.
func runServe(_ path: String) -> Never {
    let configuration = loadConfiguration(path)
    applyLogSettings(configuration)
    signal(SIGPIPE, SIG_IGN)
    // Block the signals in every thread; this thread takes them with sigwait.
    var signals = sigset_t()
    sigemptyset(&signals)
    for number in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, number) }
    pthread_sigmask(SIG_BLOCK, &signals, nil)

    let server: MailcloakServer
    do {
        server = try MailcloakServer(configuration: configuration)
    } catch {
        fail("start failed: \(error)")
    }
    dropPrivileges(configuration.server.privileges)
    Logger.shared.info("mailcloak starting", [(.version, mailcloakVersion)])
    server.start()
    var running = configuration
    while true {
        var received: Int32 = 0
        sigwait(&signals, &received)
        if received == SIGHUP {
            running = reload(server, path: path, running: running)
            continue
        }
        Logger.shared.info("stopping", [(.reason, received == SIGTERM ? "SIGTERM" : "SIGINT")])
        server.drain(timeout: configuration.server.limits.drainTimeout) { receivedStopSignal() }
        server.stop()
        exit(0)
    }
}

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "serve": runServe(configPath(arguments.dropFirst()))
case "check": runCheck(configPath(arguments.dropFirst()))
case "version", "--version":
    printLine("mailcloak \(mailcloakVersion)")
case "help", "--help", "-h":
    printLine(usage)
case .some(let command): usageError("unknown command \(command)")
case .none: usageError("a command is required")
}
