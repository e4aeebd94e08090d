import Testing

@Test func placeholderRedisCache() {}
