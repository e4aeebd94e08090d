// mailcloakctl: the admin command line for mailcloak's PostgreSQL database.
#if canImport(Glibc)
import Glibc
#endif

exit(MailcloakCtl.run(Array(CommandLine.arguments.dropFirst())))
