// The attributes of a Postfix policy delegation request that the resolver
// reads. Postfix sends about 30 attributes (SMTPD_POLICY_README); the decoder
// keeps these and counts the rest.

/// One decoded policy delegation request.
///
/// Attribute names are Postfix's (`request`, `protocol_state`, `sender`, ...).
/// Values are decoded as UTF-8, with invalid sequences replaced by U+FFFD.
public struct PolicyRequest: Sendable, Equatable {
    /// Value of `request=` (Postfix sends `smtpd_access_policy`); nil when absent.
    public var request: String?
    /// Value of `protocol_state=` (`RCPT`, `MAIL`, `DATA`, ...); empty when absent.
    public var protocolState: String
    /// Value of `sender=`; nil when absent and empty for the null sender, which Postfix sends as `sender=`.
    public var sender: String?
    /// Value of `recipient=`; nil when absent.
    public var recipient: String?
    /// Value of `sasl_method=` as the client typed it; empty when absent or not authenticated.
    public var saslMethod: String
    /// Value of `sasl_username=`; empty when absent or not authenticated.
    public var saslUsername: String
    /// Value of `client_address=`; empty when absent.
    public var clientAddress: String
    /// Value of `queue_id=`; empty when absent or before Postfix created a queue file.
    public var queueID: String
    /// Number of attribute lines in the request, unknown names included.
    public var attributeCount: Int

    /// Creates a request; every attribute defaults to its "absent" value.
    public init(
        request: String? = nil,
        protocolState: String = "",
        sender: String? = nil,
        recipient: String? = nil,
        saslMethod: String = "",
        saslUsername: String = "",
        clientAddress: String = "",
        queueID: String = "",
        attributeCount: Int = 0
    ) {
        self.request = request
        self.protocolState = protocolState
        self.sender = sender
        self.recipient = recipient
        self.saslMethod = saslMethod
        self.saslUsername = saslUsername
        self.clientAddress = clientAddress
        self.queueID = queueID
        self.attributeCount = attributeCount
    }
}
