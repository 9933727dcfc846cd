/// What a caller asked for, as it arrived: unvalidated text apart from the profile.
public struct IssuanceRequest: Sendable {
    public var csrPEM: String
    public var dnsNames: [String]?
    public var ipAddresses: [String]?
    public var duration: String?
    public var profile: CertificateProfile?

    public init(
        csrPEM: String, dnsNames: [String]? = nil, ipAddresses: [String]? = nil, duration: String? = nil,
        profile: CertificateProfile? = nil
    ) {
        self.csrPEM = csrPEM
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.duration = duration
        self.profile = profile
    }
}

/// The validated, canonical names a certificate will carry.
public struct RequestedNames: Hashable, Sendable {
    public var dnsNames: [String]
    public var ipAddresses: [IPAddress]
    /// URIs (workload identities such as SPIFFE IDs), only ever from the CSR.
    public var uris: [String]

    public init(dnsNames: [String] = [], ipAddresses: [IPAddress] = [], uris: [String] = []) {
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.uris = uris
    }

    public var isEmpty: Bool { dnsNames.isEmpty && ipAddresses.isEmpty && uris.isEmpty }

    /// All names as text, DNS names first: the form stored in the ledger and shown to people.
    public var all: [String] { dnsNames + ipAddresses.map(\.description) + uris }
}
