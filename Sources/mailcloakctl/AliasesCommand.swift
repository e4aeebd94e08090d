// `mailcloakctl aliases add|del|enable|disable|list`: alias addresses that
// deliver to an identity-provider user. An alias's domain must be a
// domain in the domains table.
import Model
import Store

enum AliasesCommand {
    /// One row of `aliases list --json`.
    struct AliasJSON: Encodable {
        let address: String
        let username: String
        let domain: String
        let enabled: Bool
        let created_at: String
        let updated_at: String
    }

    static func run(_ arguments: Arguments) throws(CLIError) {
        guard arguments.words.count >= 2 else { throw .usage("missing aliases subcommand", usage: Usage.aliases) }
        let subcommand = arguments.words[1]
        let allowed: Set<String> = subcommand == "list" ? ["--user", "--domain"] : []
        try arguments.allowOnly(allowed, command: "aliases \(subcommand)", usage: Usage.aliases)

        switch subcommand {
        case "list":
            _ = try arguments.operands(after: 2, names: [], usage: Usage.aliases)
            try list(arguments)
        case "add":
            let operands = try arguments.operands(after: 2, names: ["ALIAS", "USERNAME"], usage: Usage.aliases)
            let address = try parseAddress(operands[0])
            let username = try validated(
                Validation.username(operands[1]), what: "username", input: operands[1], usage: Usage.aliases)
            let database = try MailcloakCtl.openDatabase(arguments)
            try MailcloakCtl.perform { () throws(AdminError) in
                try database.addAlias(address.description, domain: address.domain, username: username)
            }
            Output.out("added alias \(address) for user \(username)\n")
        case "del", "enable", "disable":
            let operand = try arguments.operands(after: 2, names: ["ALIAS"], usage: Usage.aliases)[0]
            let address = try parseAddress(operand).description
            let database = try MailcloakCtl.openDatabase(arguments)
            try MailcloakCtl.perform { () throws(AdminError) in
                switch subcommand {
                case "del": try database.deleteAlias(address)
                case "enable": try database.setAliasEnabled(address, true)
                default: try database.setAliasEnabled(address, false)
                }
            }
            let verb = ["del": "deleted", "enable": "enabled", "disable": "disabled"][subcommand]!
            Output.out("\(verb) alias \(address)\n")
        default:
            throw .usage("unknown aliases subcommand \"\(subcommand)\"", usage: Usage.aliases)
        }
    }

    private static func parseAddress(_ text: String) throws(CLIError) -> MailAddress {
        try validated(Validation.address(text), what: "alias address", input: text, usage: Usage.aliases)
    }

    private static func list(_ arguments: Arguments) throws(CLIError) {
        let user = try arguments.values["--user"].map { (text: String) throws(CLIError) -> String in
            try validated(Validation.username(text), what: "username", input: text, usage: Usage.aliases)
        }
        let domain = try arguments.values["--domain"].map { (text: String) throws(CLIError) -> String in
            try validated(Validation.domain(text), what: "domain", input: text, usage: Usage.aliases)
        }
        let database = try MailcloakCtl.openDatabase(arguments)
        let aliases = try MailcloakCtl.perform { () throws(AdminError) in
            try database.listAliases(username: user, domain: domain)
        }
        if arguments.json {
            let rows = aliases.map { alias in
                AliasJSON(
                    address: alias.address, username: alias.username, domain: alias.domain, enabled: alias.enabled,
                    created_at: alias.createdAt, updated_at: alias.updatedAt)
            }
            Output.out(try Output.json(rows))
            return
        }
        if aliases.isEmpty {
            Output.out("no aliases\n")
            return
        }
        let rows = aliases.map { [$0.address, $0.username, Output.status($0.enabled)] }
        Output.out(Output.table(header: ["ALIAS", "USERNAME", "STATUS"], rows: rows))
    }
}
