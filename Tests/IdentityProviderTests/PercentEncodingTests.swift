import Testing

@testable import IdentityProvider

@Suite struct PercentEncodingTests {
    static let table: [(input: String, encoded: String)] = [
        ("alice@example.com", "alice%40example.com"),
        ("bob+x@example.com", "bob%2Bx%40example.com"),
        ("john doe@example.com", "john%20doe%40example.com"),
        ("A-Z_a.z~09", "A-Z_a.z~09"),
        ("jos\u{E9}@example.com", "jos%C3%A9%40example.com"),
        ("100%", "100%25"),
        ("a/b?c#d&e=f", "a%2Fb%3Fc%23d%26e%3Df"),
        ("\"quoted\"", "%22quoted%22"),
        ("", ""),
    ]

    @Test(arguments: table)
    func encodeUsesUnreservedSetOnly(input: String, encoded: String) {
        #expect(PercentEncoding.encode(input) == encoded)
    }

    @Test func formBodyEncodesEveryValue() {
        let body = PercentEncoding.formBody([
            ("grant_type", "client_credentials"), ("client_id", "mail cloak"), ("client_secret", "a+b&c=d"),
        ])
        #expect(body == "grant_type=client_credentials&client_id=mail%20cloak&client_secret=a%2Bb%26c%3Dd")
    }

    @Test func usersQueryEncodesPlusAsHex() {
        let query = KeycloakClient.usersQuery(field: "email", value: "bob+x@example.com", max: 20)
        #expect(query == "?email=bob%2Bx%40example.com&exact=true&briefRepresentation=true&max=20")
    }

    @Test func secretPrintsAsMask() {
        let secret = Secret("s3cret-value")
        #expect("\(secret)" == "***")
        #expect(String(reflecting: secret) == "***")
    }
}
