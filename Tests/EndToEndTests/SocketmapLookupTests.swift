// postmap -q against mailcloak's three socketmap tables (alias, domain,
// mailbox), queried by Postfix's own dict_sockmap client.

import Testing

/// One `postmap -q` query and the value mailcloak must return.
struct SocketmapCase: Sendable, CustomTestStringConvertible {
    let map: String
    let key: String
    /// The value postmap prints, or nil when the key must not be found.
    let value: String?

    var testDescription: String { "\(map) \(key)" }
}

extension EndToEnd {
    @Suite struct SocketmapLookups {
        static let cases: [SocketmapCase] = [
            SocketmapCase(map: "alias", key: "sales@example.com", value: "alice@example.com"),
            SocketmapCase(map: "alias", key: "Sales+x@Example.com", value: "alice+x@example.com"),
            // A primary address must not be found, or Postfix would expand it again forever.
            SocketmapCase(map: "alias", key: "alice@example.com", value: nil),
            // Postfix also looks bare domains up in virtual_alias_maps (virtual_alias_domains).
            SocketmapCase(map: "alias", key: "example.com", value: nil),
            SocketmapCase(map: "domain", key: "example.com", value: "example.com"),
            SocketmapCase(map: "domain", key: "disabled.test", value: nil),
            SocketmapCase(map: "mailbox", key: "alice@example.com", value: "alice@example.com"),
        ]

        @Test(arguments: cases)
        func postmapLookupReturnsExpectedValue(_ lookup: SocketmapCase) throws {
            let stack = try EndToEndStack.require()

            let result = try stack.postmap(lookup.key, map: lookup.map)

            if let value = lookup.value {
                #expect(result.status == 0)
                #expect(result.standardOutput == value + "\n")
            } else {
                #expect(result.status == 1)
                #expect(result.standardOutput == "")
            }
            #expect(result.standardError == "")
        }

        @Test func unknownMapReportsPermanentError() throws {
            let stack = try EndToEndStack.require()
            let table = "socketmap:inet:\(stack.mailcloak.endpoint):nomap"

            let result = try stack.postmap("alice@example.com", map: "nomap")

            #expect(result.status == 1)
            #expect(result.standardOutput == "")
            #expect(
                result.standardError == """
                    postmap: warning: \(table) socketmap server permanent error: unknown map nomap
                    postmap: fatal: table \(table): query error

                    """)
        }
    }
}
