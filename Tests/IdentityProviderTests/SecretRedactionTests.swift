// Tests of the URL redaction used in log lines: a user and password in the
// authority are masked, and everything else is kept.
import Testing

@testable import IdentityProvider

@Test(arguments: [
    ("https://admin:hunter2@kc.example.com/auth", "https://***@kc.example.com/auth"),
    ("http://user@127.0.0.1:8080", "http://***@127.0.0.1:8080"),
    ("https://kc.example.com", "https://kc.example.com"),
    ("https://kc.example.com/users?email=a@example.com", "https://kc.example.com/users?email=a@example.com"),
    ("https://a:b@c@kc.example.com/", "https://***@kc.example.com/"),
    ("kc.example.com", "kc.example.com"),
])
func redactionMasksUserInfo(url: String, expected: String) {
    #expect(Secret.redactingUserInfo(url) == expected)
}
