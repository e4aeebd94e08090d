// Command-line parsing for mailcloakctl. Options may appear anywhere, as
// `--name value` or `--name=value`, and `--` ends options. Each command names
// the options it accepts, and anything else is a usage error (exit 2).

/// A failure that ends the command with a message on stderr.
enum CLIError: Error, Equatable {
    /// Bad command line: exit 2, the message and a usage line.
    case usage(String, usage: String)
    /// The command could not be carried out: exit 1 and the message.
    case runtime(String)
}

/// The parsed command line: words in order, and the options seen.
struct Arguments {
    /// Options that take a value.
    static let valueOptions: Set<String> = [
        "--config", "--database-url", "--user", "--domain", "--address", "--cache-dir", "--max-stale",
    ]
    /// Options without a value.
    static let flagOptions: Set<String> = ["--json", "--secret-stdin", "--dry-run", "--help"]
    /// Options every command accepts.
    static let globalOptions: Set<String> = ["--config", "--database-url", "--json", "--help"]

    var words: [String] = []
    var values: [String: String] = [:]
    var flags: Set<String> = []

    /// Splits `arguments` (without the program name) into words and options.
    init(_ arguments: [String]) throws(CLIError) {
        var index = 0
        var optionsEnded = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if optionsEnded || !argument.hasPrefix("-") || argument == "-" {
                words.append(argument)
                continue
            }
            if argument == "--" {
                optionsEnded = true
                continue
            }
            let name = argument == "-h" ? "--help" : String(argument.prefix { $0 != "=" })
            let inlineValue = argument.contains("=") ? String(argument.drop { $0 != "=" }.dropFirst()) : nil
            if Self.flagOptions.contains(name) {
                guard inlineValue == nil else { throw .usage("option \(name) takes no value", usage: Usage.main) }
                flags.insert(name)
            } else if Self.valueOptions.contains(name) {
                if let inlineValue {
                    values[name] = inlineValue
                } else {
                    guard index < arguments.count else { throw .usage("option \(name) needs a value", usage: Usage.main) }
                    values[name] = arguments[index]
                    index += 1
                }
            } else {
                throw .usage("unknown option \(argument)", usage: Usage.main)
            }
        }
    }

    var json: Bool { flags.contains("--json") }

    /// Fails when an option outside `allowed` (plus the global ones) was given.
    func allowOnly(_ allowed: Set<String>, command: String, usage: String) throws(CLIError) {
        let given = Set(values.keys).union(flags)
        let extra = given.subtracting(allowed).subtracting(Self.globalOptions)
        if let option = extra.sorted().first {
            throw .usage("option \(option) is not valid for \(command)", usage: usage)
        }
    }

    /// Returns the words after the command words, requiring exactly `names.count` of them.
    func operands(after commandWords: Int, names: [String], usage: String) throws(CLIError) -> [String] {
        let operands = Array(words.dropFirst(commandWords))
        if operands.count < names.count {
            throw .usage("missing \(names[operands.count])", usage: usage)
        }
        if operands.count > names.count {
            throw .usage("unexpected argument \(operands[names.count])", usage: usage)
        }
        return operands
    }
}

/// Usage lines, shown after a usage error and by --help.
enum Usage {
    static let main = "usage: mailcloakctl [--database-url URL | --config FILE] [--json] COMMAND [ARGS]"
    static let migrate = "usage: mailcloakctl migrate"
    static let domains = "usage: mailcloakctl domains add|del|enable|disable DOMAIN | domains list"
    static let aliases = "usage: mailcloakctl aliases add ALIAS USERNAME | aliases del|enable|disable ALIAS"
        + " | aliases list [--user USERNAME] [--domain DOMAIN]"
    static let apps = "usage: mailcloakctl apps add|secret APP_ID [--secret-stdin] | apps del|enable|disable APP_ID"
        + " | apps allow|disallow APP_ID ADDRESS | apps list"
    static let importSQLite = "usage: mailcloakctl import-sqlite [--dry-run] FILE"
    static let checkpassword = "usage: mailcloakctl [--database-url URL | --config FILE] checkpassword "
        + "[--cache-dir DIR [--max-stale DURATION]] [--] REPLY-PROGRAM..."
    static let cache = "usage: mailcloakctl --config FILE cache flush [--user USERNAME | --address ADDRESS]"

    static let help = """
        \(main)

        Manages the mailcloak PostgreSQL database: domains, aliases, apps and their senders.

        Database (first match wins): --database-url URL (libpq connection string or URI),
        --config FILE (database.url of the daemon's YAML configuration), or the
        environment variable MAILCLOAK_DATABASE_URL.

        Commands:
          migrate                              apply pending schema migrations
          domains add|del|enable|disable DOMAIN
          domains list
          aliases add ALIAS USERNAME           ALIAS must be in an existing domain
          aliases del|enable|disable ALIAS
          aliases list [--user USERNAME] [--domain DOMAIN]
          apps add APP_ID [--secret-stdin]     hash the secret read from standard input,
                                               or generate one and print it once
          apps secret APP_ID [--secret-stdin]  replace the app's secret the same way
          apps del|enable|disable APP_ID
          apps allow|disallow APP_ID ADDRESS   edit the app's sender allow-list
          apps list
          import-sqlite [--dry-run] FILE       import a first-generation state.db
          cache flush [--user USERNAME | --address ADDRESS]
                                               delete identity answers from the shared
                                               Redis cache (all without an option) and
                                               from every instance's memory; needs
                                               --config for identity.redis
          checkpassword REPLY-PROGRAM...       Dovecot checkpassword passdb for apps: read
                                               user name and secret from descriptor 3, run
                                               REPLY-PROGRAM with USER set on success;
                                               with --cache-dir DIR, apps that logged in
                                               before also log in while PostgreSQL is
                                               unreachable, for --max-stale (24h) after
                                               their last login

        --json prints list output as a JSON array.
        Exit status: 0 success, 1 failure, 2 invalid command line.
        checkpassword exits 1 for a wrong app or secret, 2 for a protocol error,
        111 for a temporary failure.
        """
}
