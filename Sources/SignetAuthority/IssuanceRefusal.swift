/// Why Signet will not issue what was asked. Each case carries the words the requester needs to fix the request.
public enum IssuanceRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    case request(RequestError)
    case invalidNames([NameError])
    case namesDisagree(csr: [String], body: [String])
    case noNames
    case tooManyNames(Int, maximum: Int)
    case commonNameNotAmongNames(String)
    case lifetime(LifetimeError)
    case policy(PolicyError)

    public var description: String {
        switch self {
        case .request(let error):
            error.description
        case .invalidNames(let errors):
            errors.map(\.description).joined(separator: "; ")
        case let .namesDisagree(csr, body):
            "the CSR's subjectAltNames [\(csr.joined(separator: ", "))] differ from the requested names [\(body.joined(separator: ", "))]; give the names once, or the same in both"
        case let .tooManyNames(count, maximum):
            "\(count) names requested; a certificate may carry at most \(maximum)"
        case .noNames:
            "no names requested: put dnsNames or ipAddresses in the body or subjectAltNames in the CSR"
        case .commonNameNotAmongNames(let commonName):
            "csr commonName '\(commonName)' is not one of the requested names"
        case .lifetime(let error):
            error.description
        case .policy(let error):
            error.description
        }
    }

    /// Each offending input on its own, when the refusal is about several.
    public var offendingInputs: [String] {
        switch self {
        case .invalidNames(let errors): errors.map(\.description)
        case .policy(.namesNotAllowed(let names)): names
        default: []
        }
    }
}
