import Testing

@Test func placeholderPolicyProtocol() {}
