import Testing

@Test func placeholderStoreIntegration() {}
