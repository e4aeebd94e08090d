// `mailcloakctl import-sqlite [--dry-run] FILE`: copies a first-generation
// state.db into PostgreSQL in one transaction. Existing rows are kept as
// they are; secret hashes are stored unchanged. --dry-run runs the same
// inserts and rolls them back.
import Store

#if canImport(Glibc)
import Glibc
#endif

enum ImportSQLiteCommand {
    static func run(_ arguments: Arguments) throws(CLIError) {
        try arguments.allowOnly(["--dry-run"], command: "import-sqlite", usage: Usage.importSQLite)
        let path = try arguments.operands(after: 1, names: ["FILE"], usage: Usage.importSQLite)[0]
        let dryRun = arguments.flags.contains("--dry-run")
        guard access(path, R_OK) == 0 else {
            throw .runtime("cannot read \(path): \(String(cString: strerror(errno)))")
        }

        var notes: [String] = []
        let data = try StateDatabaseReader(reader: try SQLiteReader(path: path)).read(notes: &notes)
        let database = try MailcloakCtl.openDatabase(arguments)
        let counts = try MailcloakCtl.perform { () throws(AdminError) in
            try database.importRows(data, dryRun: dryRun)
        }

        var report = notes.map { $0 + "\n" }.joined()
        report += line("domains", counts.domains)
        report += line("aliases", counts.aliases)
        report += line("apps", counts.apps)
        report += line("app senders", counts.senders)
        report += dryRun ? "dry run: rolled back, nothing was written\n" : "imported \(path)\n"
        Output.out(report)
    }

    private static func line(_ table: String, _ count: ImportTableCount) -> String {
        "\(table): \(count.added) added, \(count.alreadyPresent) already present\n"
    }
}
