// The database URL of mailcloakctl, taken from --database-url, else from
// --config (the daemon's YAML file), else from MAILCLOAK_DATABASE_URL.
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
// TODO: Read the file with the Config module's loader once it lands; until
// then --config fails with this message instead of a partial YAML parse.
func databaseURL(from path: String) throws(CLIError) -> String {
    throw .runtime(
        "reading the database URL from \(path) with --config is not supported by this build yet; "
            + "use --database-url URL or set MAILCLOAK_DATABASE_URL")
}
