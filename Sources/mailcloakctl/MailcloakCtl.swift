// Dispatches a mailcloakctl command line to its command group and maps
// errors to exit statuses: 0 success, 1 failure, 2 invalid command line.
import Store

enum MailcloakCtl {
    /// Runs one command and returns the process exit status.
    static func run(_ arguments: [String]) -> Int32 {
        do throws(CLIError) {
            let parsed = try Arguments(arguments)
            if parsed.flags.contains("--help") || parsed.words.first == "help" {
                Output.out(Usage.help + "\n")
                return 0
            }
            try dispatch(parsed)
            return 0
        } catch {
            switch error {
            case .usage(let message, let usage):
                Output.err("mailcloakctl: \(message)\n\(usage)\n")
                return 2
            case .runtime(let message):
                Output.err("mailcloakctl: \(message)\n")
                return 1
            }
        }
    }

    private static func dispatch(_ arguments: Arguments) throws(CLIError) {
        guard let command = arguments.words.first else {
            throw .usage("missing command", usage: Usage.main)
        }
        switch command {
        case "migrate": try MigrateCommand.run(arguments)
        case "domains": try DomainsCommand.run(arguments)
        case "aliases": try AliasesCommand.run(arguments)
        case "apps": try AppsCommand.run(arguments)
        case "import-sqlite": try ImportSQLiteCommand.run(arguments)
        case "cache": try CacheCommand.run(arguments)
        default: throw .usage("unknown command \"\(command)\"", usage: Usage.main)
        }
    }

    /// Opens the admin connection; with `requireSchema` the schema must be migrated.
    static func openDatabase(_ arguments: Arguments, requireSchema: Bool = true) throws(CLIError) -> AdminDatabase {
        let url = try resolveDatabaseURL(arguments)
        do throws(AdminError) {
            let database = try AdminDatabase(url: url)
            if requireSchema { try database.requireCurrentSchema() }
            return database
        } catch {
            throw .runtime(error.description)
        }
    }

    /// Runs an admin operation, turning its error into a runtime failure (exit 1).
    static func perform<T>(_ body: () throws(AdminError) -> T) throws(CLIError) -> T {
        do {
            return try body()
        } catch {
            throw .runtime(error.description)
        }
    }
}
