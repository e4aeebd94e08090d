// `mailcloakctl apps ...`: applications that authenticate with SASL PLAIN
// or LOGIN (Dovecot checks their secret) and the sender addresses each may use.
import Model
import Store

enum AppsCommand {
    /// One row of `apps list --json`. The secret hash is never shown.
    struct AppJSON: Encodable {
        let id: String
        let enabled: Bool
        let senders: [SenderJSON]
        let created_at: String
        let updated_at: String
    }

    struct SenderJSON: Encodable {
        let address: String
        let enabled: Bool
    }

    static func run(_ arguments: Arguments) throws(CLIError) {
        guard arguments.words.count >= 2 else { throw .usage("missing apps subcommand", usage: Usage.apps) }
        let subcommand = arguments.words[1]
        let allowed: Set<String> = ["add", "secret"].contains(subcommand) ? ["--secret-stdin"] : []
        try arguments.allowOnly(allowed, command: "apps \(subcommand)", usage: Usage.apps)

        switch subcommand {
        case "list":
            _ = try arguments.operands(after: 2, names: [], usage: Usage.apps)
            try list(arguments)
        case "add", "secret":
            let id = try appID(try arguments.operands(after: 2, names: ["APP_ID"], usage: Usage.apps)[0])
            try setSecret(subcommand, id, arguments)
        case "del", "enable", "disable":
            let id = try appID(try arguments.operands(after: 2, names: ["APP_ID"], usage: Usage.apps)[0])
            let database = try MailcloakCtl.openDatabase(arguments)
            try MailcloakCtl.perform { () throws(AdminError) in
                switch subcommand {
                case "del": try database.deleteApp(id)
                case "enable": try database.setAppEnabled(id, true)
                default: try database.setAppEnabled(id, false)
                }
            }
            let verb = ["del": "deleted", "enable": "enabled", "disable": "disabled"][subcommand]!
            Output.out("\(verb) app \(id)\n")
        case "allow", "disallow":
            let operands = try arguments.operands(after: 2, names: ["APP_ID", "ADDRESS"], usage: Usage.apps)
            let id = try appID(operands[0])
            let address = try validated(
                Validation.address(operands[1]), what: "sender address", input: operands[1], usage: Usage.apps)
            try changeSender(subcommand, id, address.description, arguments)
        default:
            throw .usage("unknown apps subcommand \"\(subcommand)\"", usage: Usage.apps)
        }
    }

    private static func appID(_ text: String) throws(CLIError) -> String {
        try validated(Validation.appID(text), what: "app id", input: text, usage: Usage.apps)
    }

    /// Adds an app or replaces its secret, printing a generated secret once.
    private static func setSecret(_ subcommand: String, _ id: String, _ arguments: Arguments) throws(CLIError) {
        let fromStandardInput = arguments.flags.contains("--secret-stdin")
        let secret = fromStandardInput ? try AppSecret.readFromStandardInput() : try AppSecret.generate()
        // Connect before hashing, so an unreachable database fails fast.
        let database = try MailcloakCtl.openDatabase(arguments)
        let hash = try AppSecret.hash(secret)
        try MailcloakCtl.perform { () throws(AdminError) in
            if subcommand == "add" {
                try database.addApp(id, secretHash: hash)
            } else {
                try database.setAppSecret(id, secretHash: hash)
            }
        }
        Output.out(subcommand == "add" ? "added app \(id)\n" : "replaced secret of app \(id)\n")
        if !fromStandardInput {
            Output.out("secret: \(secret)\n")
            Output.err("mailcloakctl: the secret is shown only once; store it now\n")
        }
    }

    private static func changeSender(
        _ subcommand: String, _ id: String, _ address: String, _ arguments: Arguments
    ) throws(CLIError) {
        let database = try MailcloakCtl.openDatabase(arguments)
        if subcommand == "disallow" {
            try MailcloakCtl.perform { () throws(AdminError) in try database.disallowSender(app: id, address: address) }
            Output.out("disallowed sender \(address) for app \(id)\n")
            return
        }
        let outcome = try MailcloakCtl.perform { () throws(AdminError) in
            try database.allowSender(app: id, address: address)
        }
        switch outcome {
        case .added: Output.out("allowed sender \(address) for app \(id)\n")
        case .reenabled: Output.out("enabled sender \(address) for app \(id)\n")
        case .alreadyAllowed: Output.out("sender \(address) is already allowed for app \(id)\n")
        }
    }

    private static func list(_ arguments: Arguments) throws(CLIError) {
        let database = try MailcloakCtl.openDatabase(arguments)
        let apps = try MailcloakCtl.perform { () throws(AdminError) in try database.listApps() }
        if arguments.json {
            let rows = apps.map { app in
                AppJSON(
                    id: app.id, enabled: app.enabled,
                    senders: app.senders.map { SenderJSON(address: $0.address, enabled: $0.enabled) },
                    created_at: app.createdAt, updated_at: app.updatedAt)
            }
            Output.out(try Output.json(rows))
            return
        }
        if apps.isEmpty {
            Output.out("no apps\n")
            return
        }
        let rows = apps.map { app -> [String] in
            let senders = app.senders.map { $0.enabled ? $0.address : "\($0.address) (disabled)" }
            return [app.id, Output.status(app.enabled), senders.isEmpty ? "-" : senders.joined(separator: ", ")]
        }
        Output.out(Output.table(header: ["APP", "STATUS", "SENDERS"], rows: rows))
    }
}
