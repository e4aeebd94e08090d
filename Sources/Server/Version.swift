/// The release of this build, printed by `mailcloak version` and logged at start.
public let mailcloakVersion = "0.1.0"
