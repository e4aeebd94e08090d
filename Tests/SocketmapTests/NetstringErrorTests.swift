import Socketmap
import Testing

@Test func netstringErrorShowsPrintableByte() {
    #expect(String(describing: NetstringError.missingTerminator(found: 59)) == "netstring ends with ';' instead of ','")
}

@Test func netstringErrorShowsControlByteInHex() {
    #expect(String(describing: NetstringError.invalidLengthDigit(0x0A)) == "netstring length contains byte 0xA")
}

@Test func netstringErrorNamesLimitOnly() {
    let error = NetstringError.lengthExceedsLimit(length: 99999, limit: 10000)
    #expect(String(describing: error) == "netstring length exceeds the limit of 10000 bytes")
}
