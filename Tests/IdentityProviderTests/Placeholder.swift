import Testing

@Test func placeholderIdentityProvider() {}
