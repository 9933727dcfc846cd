import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SignetKeys

/// Microsoft Entra ID access tokens for Key Vault, by one of three flows, cached and refreshed before expiry.
///
/// Which flow runs is decided by `fromEnvironment`: AKS workload identity when `AZURE_FEDERATED_TOKEN_FILE` is set,
/// a client secret when `AZURE_CLIENT_SECRET` is, the instance metadata endpoint (managed identity) otherwise.
/// Secrets and assertions never appear in errors or logs: only Entra's error code and description do.
public actor EntraCredential {
    public enum Flow: Sendable, CustomStringConvertible {
        case clientSecret(tenant: String, clientID: String, secret: String)
        /// The token file is re-read at every refresh: the kubelet rotates it.
        case workloadIdentity(tenant: String, clientID: String, tokenFile: String)
        case managedIdentity(clientID: String?)

        public var description: String {
            switch self {
            case .clientSecret: "client secret"
            case .workloadIdentity: "workload identity"
            case .managedIdentity: "managed identity"
            }
        }
    }

    public static let scope = "https://vault.azure.net/.default"
    /// Refresh when less than this is left (azure-identity's default).
    static let refreshMargin: TimeInterval = 300

    public nonisolated let flow: Flow
    let authorityHost: String
    let imdsEndpoint: String
    let http: HTTPClient
    private var cached: (token: String, refreshAt: Date)?
    private var tenantOverride: String?

    public init(
        flow: Flow, authorityHost: String = "https://login.microsoftonline.com/",
        imdsEndpoint: String = "http://169.254.169.254/metadata/identity/oauth2/token", http: HTTPClient
    ) {
        self.flow = flow
        self.authorityHost = authorityHost.hasSuffix("/") ? authorityHost : authorityHost + "/"
        self.imdsEndpoint = imdsEndpoint
        self.http = http
    }

    public static func fromEnvironment(_ environment: [String: String], http: HTTPClient) throws -> EntraCredential {
        let authority = environment["AZURE_AUTHORITY_HOST"] ?? "https://login.microsoftonline.com/"
        let imds = environment["AZURE_IMDS_ENDPOINT"] ?? "http://169.254.169.254/metadata/identity/oauth2/token"
        let tenant = environment["AZURE_TENANT_ID"]
        let client = environment["AZURE_CLIENT_ID"]
        if let file = environment["AZURE_FEDERATED_TOKEN_FILE"] {
            guard let tenant, let client else {
                throw EntraError.configuration("workload identity needs AZURE_TENANT_ID and AZURE_CLIENT_ID")
            }
            return EntraCredential(
                flow: .workloadIdentity(tenant: tenant, clientID: client, tokenFile: file), authorityHost: authority,
                imdsEndpoint: imds, http: http)
        }
        if let secret = environment["AZURE_CLIENT_SECRET"] {
            guard let tenant, let client else {
                throw EntraError.configuration("a client secret needs AZURE_TENANT_ID and AZURE_CLIENT_ID")
            }
            return EntraCredential(
                flow: .clientSecret(tenant: tenant, clientID: client, secret: secret), authorityHost: authority,
                imdsEndpoint: imds, http: http)
        }
        return EntraCredential(
            flow: .managedIdentity(clientID: client), authorityHost: authority, imdsEndpoint: imds, http: http)
    }

    /// A valid access token, from the cache unless it is close to expiry or `refresh` is asked for
    /// (after a 401 from the vault).
    public func token(refresh: Bool = false) async throws -> String {
        if !refresh, let cached, cached.refreshAt > Date() { return cached.token }
        let (token, lifetime) = try await fetch()
        let margin = lifetime >= 7200 ? lifetime / 2 : min(Self.refreshMargin, lifetime / 2)
        cached = (token, Date().addingTimeInterval(lifetime - margin))
        return token
    }

    /// Honours a Key Vault challenge naming another tenant (`authorization="https://login…/<tenant>"`).
    public func adoptChallenge(tenant: String) {
        if tenantOverride != tenant {
            tenantOverride = tenant
            cached = nil
        }
    }

    private func fetch() async throws -> (String, TimeInterval) {
        switch flow {
        case let .clientSecret(tenant, clientID, secret):
            return try await tokenRequest(
                tenant: tenantOverride ?? tenant,
                form: [
                    ("grant_type", "client_credentials"), ("client_id", clientID), ("client_secret", secret),
                    ("scope", Self.scope),
                ])
        case let .workloadIdentity(tenant, clientID, tokenFile):
            let assertion: String
            do {
                assertion = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(
                    in: .whitespacesAndNewlines)
            } catch {
                throw EntraError.configuration("cannot read the federated token file \(tokenFile)")
            }
            return try await tokenRequest(
                tenant: tenantOverride ?? tenant,
                form: [
                    ("grant_type", "client_credentials"), ("client_id", clientID),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", assertion), ("scope", Self.scope),
                ])
        case .managedIdentity(let clientID):
            var components = URLComponents(string: imdsEndpoint)
            components?.queryItems =
                [
                    URLQueryItem(name: "api-version", value: "2018-02-01"),
                    URLQueryItem(name: "resource", value: "https://vault.azure.net"),
                ]
                + (clientID.map { [URLQueryItem(name: "client_id", value: $0)] } ?? [])
            guard let url = components?.string else {
                throw EntraError.configuration("invalid IMDS endpoint \(imdsEndpoint)")
            }
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "Metadata", value: "true")
            return try await send(request)
        }
    }

    private func tokenRequest(tenant: String, form: [(String, String)]) async throws -> (String, TimeInterval) {
        var request = HTTPClientRequest(url: "\(authorityHost)\(tenant)/oauth2/v2.0/token")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = form.map { "\($0)=\($1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(
            separator: "&")
        request.body = .bytes(ByteBuffer(string: body))
        return try await send(request)
    }

    private func send(_ request: HTTPClientRequest) async throws -> (String, TimeInterval) {
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .seconds(10))
        } catch {
            throw EntraError.unreachable("\(flow) token endpoint: \(error)")
        }
        let data = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        guard response.status == .ok, let token = object["access_token"] as? String else {
            let code = object["error"] as? String ?? "HTTP \(response.status.code)"
            let description = (object["error_description"] as? String).map { ": \($0)" } ?? ""
            throw EntraError.refused("\(flow): \(code)\(description)")
        }
        // IMDS sends numbers as strings.
        let lifetime =
            (object["expires_in"] as? Double) ?? (object["expires_in"] as? String).flatMap(Double.init) ?? 3600
        return (token, lifetime)
    }
}

public enum EntraError: SignerFailure, Equatable, CustomStringConvertible {
    case configuration(String)
    case unreachable(String)
    case refused(String)

    /// Every token failure is an authentication failure to whoever watches the signer.
    public var failureKind: String { "authentication" }

    public var description: String {
        switch self {
        case .configuration(let what): "Entra ID configuration: \(what)"
        case .unreachable(let what): "Entra ID unreachable: \(what)"
        case .refused(let what): "Entra ID refused the token request (\(what))"
        }
    }
}
