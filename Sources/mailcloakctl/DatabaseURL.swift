// The database URL of mailcloakctl, taken from --database-url, else from
// --config (the daemon's YAML file), else from MAILCLOAK_DATABASE_URL.
import Config

#if canImport(Glibc)
import Glibc
#endif

/// Returns the database URL from the command line, the configuration file or the environment.
func resolveDatabaseURL(_ arguments: Arguments) throws(CLIError) -> String {
    if let url = arguments.values["--database-url"] {
        guard !url.isEmpty else { throw .usage("--database-url is empty", usage: Usage.main) }
        return url
    }
    if let path = arguments.values["--config"] {
        return try databaseURL(from: path)
    }
    if let value = getenv("MAILCLOAK_DATABASE_URL"), value.pointee != 0 {
        return String(cString: value)
    }
    throw .usage(
        "no database given: use --database-url URL, --config FILE or set MAILCLOAK_DATABASE_URL",
        usage: Usage.main)
}

/// Returns `database.url` from the daemon's YAML configuration file at `path`.
/// The whole file is validated, as the daemon would validate it at start.
func databaseURL(from path: String) throws(CLIError) -> String {
    do {
        return try ConfigLoader.load(path: path).database.url
    } catch {
        throw .runtime("cannot use --config \(path): \(error)")
    }
}
