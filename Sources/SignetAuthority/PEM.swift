#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Writing PEM on the issuance path. swift-asn1's `PEMDocument.pemString` builds its lines with String index
/// arithmetic, which showed up in profiles at thousands of issuances a second; Foundation's base64 is a tight loop.
public enum PEM {
    public static func encode(_ der: some Sequence<UInt8>, type: String) -> String {
        let body = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN \(type)-----\n\(body)\n-----END \(type)-----\n"
    }
}
