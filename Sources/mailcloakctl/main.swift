// mailcloakctl: the admin command line for mailcloak's PostgreSQL database.
#if canImport(Glibc)
import Glibc
#endif

let arguments = Array(CommandLine.arguments.dropFirst())
// checkpassword has the exit statuses of Dovecot's checkpassword interface, so it bypasses MailcloakCtl.run.
if CheckpasswordCommand.isInvoked(arguments) {
    exit(CheckpasswordCommand.run(arguments))
}
exit(MailcloakCtl.run(arguments))
