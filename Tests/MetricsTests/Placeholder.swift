import Testing

@Test func placeholderMetrics() {}
