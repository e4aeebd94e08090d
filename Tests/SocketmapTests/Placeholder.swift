import Testing

@Test func placeholderSocketmap() {}
