// `mailcloakctl domains add|del|enable|disable|list`: the mail domains this
// platform serves. A domain with aliases cannot be deleted.
import Store

enum DomainsCommand {
    /// One row of `domains list --json`.
    struct DomainJSON: Encodable {
        let name: String
        let enabled: Bool
        let aliases: Int
        let created_at: String
        let updated_at: String
    }

    static func run(_ arguments: Arguments) throws(CLIError) {
        guard arguments.words.count >= 2 else { throw .usage("missing domains subcommand", usage: Usage.domains) }
        let subcommand = arguments.words[1]
        try arguments.allowOnly([], command: "domains \(subcommand)", usage: Usage.domains)

        switch subcommand {
        case "list":
            _ = try arguments.operands(after: 2, names: [], usage: Usage.domains)
            try list(arguments)
        case "add", "del", "enable", "disable":
            let operand = try arguments.operands(after: 2, names: ["DOMAIN"], usage: Usage.domains)[0]
            let domain = try validated(
                Validation.domain(operand), what: "domain", input: operand, usage: Usage.domains)
            let database = try MailcloakCtl.openDatabase(arguments)
            try change(subcommand, domain, database)
        default:
            throw .usage("unknown domains subcommand \"\(subcommand)\"", usage: Usage.domains)
        }
    }

    private static func change(_ subcommand: String, _ domain: String, _ database: AdminDatabase) throws(CLIError) {
        try MailcloakCtl.perform { () throws(AdminError) in
            switch subcommand {
            case "add": try database.addDomain(domain)
            case "del": try database.deleteDomain(domain)
            case "enable": try database.setDomainEnabled(domain, true)
            default: try database.setDomainEnabled(domain, false)
            }
        }
        let verb = ["add": "added", "del": "deleted", "enable": "enabled", "disable": "disabled"][subcommand]!
        Output.out("\(verb) domain \(domain)\n")
    }

    private static func list(_ arguments: Arguments) throws(CLIError) {
        let database = try MailcloakCtl.openDatabase(arguments)
        let domains = try MailcloakCtl.perform { () throws(AdminError) in try database.listDomains() }
        if arguments.json {
            let rows = domains.map { domain in
                DomainJSON(
                    name: domain.name, enabled: domain.enabled, aliases: domain.aliasCount,
                    created_at: domain.createdAt, updated_at: domain.updatedAt)
            }
            Output.out(try Output.json(rows))
            return
        }
        if domains.isEmpty {
            Output.out("no domains\n")
            return
        }
        let rows = domains.map { [$0.name, Output.status($0.enabled), String($0.aliasCount)] }
        Output.out(Output.table(header: ["DOMAIN", "STATUS", "ALIASES"], rows: rows))
    }
}
