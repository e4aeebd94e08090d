import Model
import Testing

@Suite struct MailAddressTests {
    struct ParseRow: Sendable, CustomStringConvertible {
        let input: String
        let local: String?
        let domain: String?
        var description: String { input }
    }

    static let parseRows: [ParseRow] = [
        ParseRow(input: "alice@example.com", local: "alice", domain: "example.com"),
        ParseRow(input: "Alice@Example.COM", local: "alice", domain: "example.com"),
        ParseRow(input: "alice@example.com.", local: "alice", domain: "example.com"),
        ParseRow(input: "\"john doe\"@example.com", local: "john doe", domain: "example.com"),
        ParseRow(input: "\"a\\\"b\"@example.com", local: "a\"b", domain: "example.com"),
        ParseRow(input: "a@b@example.com", local: "a@b", domain: "example.com"),
        ParseRow(input: "Jürgen@Bücher.Example", local: "jürgen", domain: "bücher.example"),
        ParseRow(input: "ÉLODIE@example.com", local: "élodie", domain: "example.com"),
        ParseRow(input: "", local: nil, domain: nil),
        ParseRow(input: "example.com", local: nil, domain: nil),
        ParseRow(input: "@example.com", local: nil, domain: nil),
        ParseRow(input: "alice@", local: nil, domain: nil),
        ParseRow(input: "alice@.", local: nil, domain: nil),
        ParseRow(input: "\"\"@example.com", local: nil, domain: nil),
    ]

    @Test(arguments: parseRows)
    func addressParsesRow(_ row: ParseRow) {
        let address = MailAddress(row.input)
        #expect(address?.localPart == row.local)
        #expect(address?.domain == row.domain)
    }

    struct ExtensionRow: Sendable, CustomStringConvertible {
        let input: String
        let delimiters: String
        let base: String
        let addressExtension: String?
        var description: String { "\(input) [\(delimiters)]" }
    }

    static let extensionRows: [ExtensionRow] = [
        ExtensionRow(input: "alice+tag@example.com", delimiters: "+", base: "alice@example.com", addressExtension: "+tag"),
        ExtensionRow(input: "alice+a+b@example.com", delimiters: "+", base: "alice@example.com", addressExtension: "+a+b"),
        ExtensionRow(input: "alice-tag@example.com", delimiters: "+-", base: "alice@example.com", addressExtension: "-tag"),
        ExtensionRow(input: "alice@example.com", delimiters: "+", base: "alice@example.com", addressExtension: nil),
        ExtensionRow(input: "alice+tag@example.com", delimiters: "", base: "alice+tag@example.com", addressExtension: nil),
        ExtensionRow(input: "+owner@example.com", delimiters: "+", base: "+owner@example.com", addressExtension: nil),
        ExtensionRow(input: "owner-list@example.com", delimiters: "-", base: "owner-list@example.com", addressExtension: nil),
        ExtensionRow(input: "list-request@example.com", delimiters: "-", base: "list-request@example.com", addressExtension: nil),
        ExtensionRow(input: "jürgen+x@example.com", delimiters: "+", base: "jürgen@example.com", addressExtension: "+x"),
        ExtensionRow(input: "anna§x@example.com", delimiters: "§", base: "anna@example.com", addressExtension: "§x"),
    ]

    @Test(arguments: extensionRows)
    func addressSplitsExtensionRow(_ row: ExtensionRow) throws {
        let address = try #require(MailAddress(row.input))
        let (base, addressExtension) = address.splittingExtension(delimiters: row.delimiters)
        #expect(base.description == row.base)
        #expect(addressExtension == row.addressExtension)
    }

    @Test func addressesCompareCaseInsensitively() {
        #expect(MailAddress("Sales@Example.com") == MailAddress("sales@example.COM"))
    }

    @Test func domainCanonicalFormDropsDotAndCase() {
        #expect(canonicalDomain("Example.COM.") == "example.com")
    }
}
