import Testing

@Test func placeholderConfig() {}
