// `mailcloakctl migrate`: applies the schema migrations embedded in Store.
import Store

enum MigrateCommand {
    static func run(_ arguments: Arguments) throws(CLIError) {
        try arguments.allowOnly([], command: "migrate", usage: Usage.migrate)
        _ = try arguments.operands(after: 1, names: [], usage: Usage.migrate)
        let database = try MailcloakCtl.openDatabase(arguments, requireSchema: false)
        let (applied, version) = try MailcloakCtl.perform { () throws(AdminError) in try database.migrate() }

        if applied.isEmpty {
            Output.out("schema version \(version), up to date\n")
            return
        }
        for migration in applied {
            Output.out("applied migration \(migration.version): \(migration.name)\n")
        }
        Output.out("schema version \(version)\n")
    }
}
