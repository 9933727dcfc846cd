import Crypto
import SwiftASN1
import X509
import _CryptoExtras

/// A CSR that parsed, whose proof of possession verified, and whose key is strong enough to certify.
public struct InspectedRequest: Sendable {
    public let request: CertificateSigningRequest
    public let key: SubjectKeyKind
    /// Names from the CSR's subjectAltName extension request, in its order, not yet validated.
    public let requestedDNSNames: [String]
    public let requestedIPAddresses: [IPAddress]
    public let requestedURIs: [String]
    public let commonName: String?
    /// SHA-256 of the CSR's DER, recorded in the ledger so a certificate can be matched to the request it answered.
    public let sha256: [UInt8]

    public var publicKey: Certificate.PublicKey { request.publicKey }

    /// Parses `pem` and runs every check that depends on the CSR alone.
    public init(pem: String) throws(RequestError) {
        let document: PEMDocument
        do {
            document = try PEMDocument(pemString: pem)
        } catch {
            throw .notPEM
        }
        switch document.discriminator {
        case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
            break
        case "CERTIFICATE":
            throw .certificateInsteadOfRequest
        default:
            throw .wrongPEMType(document.discriminator)
        }
        try self.init(der: document.derBytes)
    }

    public init(der: [UInt8]) throws(RequestError) {
        let request: CertificateSigningRequest
        do {
            request = try CertificateSigningRequest(derEncoded: der)
        } catch {
            // swift-certificates refuses keys it cannot use (P-224, RSA below 2048) while parsing;
            // look at the key ourselves so the requester learns that, not just "does not parse".
            if let key = SubjectKeyKind.probe(csrDER: der), !key.isAcceptable {
                throw .unacceptableKey(key.description)
            }
            throw .unparseable(String(describing: error))
        }
        let key = SubjectKeyKind(request.publicKey)
        guard key.isAcceptable else { throw .unacceptableKey(key.description) }
        guard request.publicKey.isValidSignature(request.signature, for: request) else {
            throw .badSignature
        }

        let extensions: Certificate.Extensions?
        do {
            extensions = try request.attributes.extensionRequest?.extensions
        } catch {
            throw .unparseable("its extension request is malformed: \(error)")
        }
        var dnsNames: [String] = []
        var ipAddresses: [IPAddress] = []
        var uris: [String] = []
        if let extensions {
            if let constraints = try? extensions.basicConstraints, case .isCertificateAuthority = constraints {
                throw .requestsCertificateAuthority("basicConstraints CA:true")
            }
            if let usage = try? extensions.keyUsage, usage.keyCertSign || usage.cRLSign {
                throw .requestsCertificateAuthority("keyUsage keyCertSign or cRLSign")
            }
            let alternativeNames: SubjectAlternativeNames?
            do {
                alternativeNames = try extensions.subjectAlternativeNames
            } catch {
                throw .unparseable("its subjectAltName extension is malformed: \(error)")
            }
            for name in alternativeNames ?? SubjectAlternativeNames() {
                switch name {
                case .dnsName(let dns):
                    dnsNames.append(dns)
                case .ipAddress(let octets):
                    guard let address = IPAddress(bytes: octets.bytes) else {
                        throw .unparseable("its subjectAltName has an iPAddress of \(octets.bytes.count) bytes")
                    }
                    ipAddresses.append(address)
                case .uniformResourceIdentifier(let uri):
                    uris.append(uri)
                default:
                    throw .unsupportedAlternativeName(String(describing: name))
                }
            }
        }

        var commonName: String?
        for relativeName in request.subject {
            for attribute in relativeName where attribute.type == .RDNAttributeType.commonName {
                guard commonName == nil else { throw .unparseable("its subject has more than one commonName") }
                commonName = String(attribute.value) ?? attribute.value.description
            }
        }

        self.request = request
        self.key = key
        self.requestedDNSNames = dnsNames
        self.requestedIPAddresses = ipAddresses
        self.requestedURIs = uris
        self.commonName = commonName
        self.sha256 = Array(SHA256.hash(data: der))
    }
}

/// Why a CSR cannot be certified, independent of who asks.
public enum RequestError: Error, Equatable, Sendable, CustomStringConvertible {
    case notPEM
    case certificateInsteadOfRequest
    case wrongPEMType(String)
    case unparseable(String)
    case badSignature
    case unacceptableKey(String)
    case requestsCertificateAuthority(String)
    case unsupportedAlternativeName(String)

    public var description: String {
        switch self {
        case .notPEM:
            "csr is not PEM: expected one '-----BEGIN CERTIFICATE REQUEST-----' block"
        case .certificateInsteadOfRequest:
            "csr holds a CERTIFICATE where a CERTIFICATE REQUEST belongs"
        case .wrongPEMType(let type):
            "csr holds a '\(type)' PEM block where a CERTIFICATE REQUEST belongs"
        case .unparseable(let reason):
            "csr is not a valid PKCS#10 request: \(reason)"
        case .badSignature:
            "csr signature does not verify with its own public key (no proof of possession)"
        case .unacceptableKey(let key):
            "csr key is \(key); accepted keys are RSA of 2048 bits or more, ECDSA P-256 or P-384, and Ed25519"
        case .requestsCertificateAuthority(let what):
            "csr asks for certificate-authority rights (\(what)); Signet issues only end-entity certificates"
        case .unsupportedAlternativeName(let name):
            "csr asks for the subjectAltName \(name); only dNSName and iPAddress are supported"
        }
    }
}
