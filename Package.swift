// swift-tools-version:6.2
import PackageDescription

let strictness: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "signet",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "signet", targets: ["signet"]),
        .executable(name: "signet-bench", targets: ["signet-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-openapi-runtime.git", from: "1.13.4", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird.git", from: "2.1.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-openapi-async-http-client.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        // Pure certificate-authority logic: CSR inspection, name rules and policy, profiles, lifetimes,
        // and building a certificate through whatever signer holds the CA key. No I/O.
        .target(
            name: "SignetAuthority",
            dependencies: [
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strictness
        ),
        // Managed certificates' pure model: the spec (names, key, lifetime, the Secret it is delivered to and what
        // goes into it) and its rules against a caller's policy. No I/O; the ledger stores it, the server renews it.
        .target(
            name: "SignetManaged",
            dependencies: ["SignetAuthority"],
            swiftSettings: strictness
        ),
        // Key custody: reading CA keys (PKCS#8, SEC1, PKCS#1, encrypted PKCS#8), the signer seam, CA material on disk.
        .target(
            name: "SignetKeys",
            dependencies: [
                "SignetAuthority",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strictness
        ),
        // The one outbound HTTP transport (retries, backoff, Retry-After, one credential refresh) for Key Vault and
        // Kubernetes.
        .target(
            name: "SignetHTTP",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictness
        ),
        // The CA key in Azure Key Vault: Entra ID tokens, the keys REST API with retries, the signer.
        .target(
            name: "SignetKeyVault",
            dependencies: [
                "SignetAuthority", "SignetKeys", "SignetHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictness
        ),
        // The system's DNS resolver library (libresolv, glibc): dns-01 validation asks a configurable server for TXT
        // records through it instead of a hand-written DNS client. A few lines of C set the server and flatten answers.
        .target(name: "CResolv", linkerSettings: [.linkedLibrary("resolv")]),
        // The PKCS#11 declarations (p11-kit's header; Debian libp11-kit-dev). Modules are dlopen'ed, nothing is linked.
        .systemLibrary(
            name: "CPKCS11",
            pkgConfig: "p11-kit-1",
            providers: [.apt(["libp11-kit-dev"]), .brew(["p11-kit"])]
        ),
        // The CA key on a PKCS#11 token (HSMs, SoftHSM2): module loading, sessions, signing.
        .target(
            name: "SignetPKCS11",
            dependencies: [
                "CPKCS11", "SignetAuthority", "SignetKeys",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictness
        ),
        // Kubernetes: configuration (in-cluster, kubeconfig), the REST client for Secrets, watches and Events, and
        // the Istio-ready TLS Secret.
        .target(
            name: "SignetKubernetes",
            dependencies: [
                "SignetAuthority", "SignetKeys", "SignetHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictness
        ),
        // The issuance ledger and API tokens in SQLite.
        .target(
            name: "SignetLedger",
            dependencies: [
                "SignetAuthority", "SignetACME", "SignetManaged",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictness
        ),
        // The ledger's stores on PostgreSQL (PostgresNIO): the same protocols as the SQLite ledger, for several
        // replicas on one database.
        .target(
            name: "SignetPostgres",
            dependencies: [
                "SignetAuthority", "SignetACME", "SignetLedger", "SignetManaged",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictness
        ),
        // How the server and the controller log: text or one JSON object per line, each line with its request id.
        .target(
            name: "SignetLogging",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: strictness
        ),
        // Types and server stubs generated from api/openapi.yaml by swift-openapi-generator (committed, not a plugin).
        .target(
            name: "SignetOpenAPI",
            dependencies: [
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")
            ]
        ),
        // Delivery of certificates into Kubernetes: the Istio-shaped TLS Secret (its contents, checks and extra outputs,
        // PKCS#12 included) and its owner-checked, conflict-safe write through the Kubernetes client.
        .target(
            name: "SignetDelivery",
            dependencies: [
                "SignetAuthority", "SignetManaged", "SignetKeys", "SignetKubernetes",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictness
        ),
        // The one renewal engine: key, find-or-issue, Secret, record, over a state store (the ledger for managed
        // certificates, a pending-key Secret and the resource's status for the controller) and a certificate source.
        .target(
            name: "SignetRenewal",
            dependencies: [
                "SignetAuthority", "SignetManaged", "SignetKeys", "SignetKubernetes", "SignetDelivery",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictness
        ),
        // The one client of Signet's own API (the generated client over AsyncHTTPClient), for the controller and the CLI:
        // they differ only in how they authenticate.
        .target(
            name: "SignetClient",
            dependencies: [
                "SignetAuthority", "SignetKeys", "SignetOpenAPI",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strictness
        ),
        // The HTTP service: configuration, the issuance pipeline, managed certificates and their renewal, handlers,
        // problem+json, metrics, TLS, lifecycle.
        .target(
            name: "SignetServer",
            dependencies: [
                "SignetAuthority", "SignetACME", "CResolv", "SignetKeys", "SignetKeyVault", "SignetPKCS11",
                "SignetKubernetes", "SignetDelivery", "SignetRenewal", "SignetManaged", "SignetLedger",
                "SignetPostgres",
                "SignetOpenAPI", "SignetLogging",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictness
        ),
        // ACME (RFC 8555, 8737, 8738, 9773): the protocol's pure parts: JWS and JWK verification on swift-crypto (no
        // package here does it), identifiers, challenges, the state machines, renewal information. No I/O.
        .target(
            name: "SignetACME",
            dependencies: [
                "SignetAuthority",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strictness
        ),
        // The in-cluster renewal controller: Certificate resources, reconciliation, leader election, the Gateway shim.
        .target(
            name: "SignetController",
            dependencies: [
                "SignetAuthority", "SignetKeys", "SignetKubernetes", "SignetDelivery", "SignetRenewal", "SignetOpenAPI",
                "SignetClient",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: strictness
        ),
        .executableTarget(
            name: "signet",
            dependencies: [
                "SignetAuthority", "SignetKeys", "SignetKeyVault", "SignetPKCS11", "SignetKubernetes", "SignetDelivery",
                "SignetLedger", "SignetServer", "SignetOpenAPI",
                "SignetController", "SignetACME", "SignetClient", "SignetLogging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictness
        ),
        // The in-process half of the benchmark (bench/run.sh): request generation, the crypto ceiling, ledger queries,
        // and the ACME client loop run against Signet and Pebble alike.
        .executableTarget(
            name: "signet-bench",
            dependencies: [
                "SignetAuthority", "SignetKeys", "SignetLedger", "SignetPostgres", "SignetACME",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            path: "bench/signet-bench",
            swiftSettings: strictness
        ),
        .testTarget(
            name: "SignetTests",
            dependencies: [
                "SignetAuthority", "SignetKeys", "SignetKeyVault", "SignetPKCS11", "SignetKubernetes", "SignetDelivery",
                "SignetLedger", "SignetServer", "SignetOpenAPI",
                "SignetController", "SignetACME", "SignetHTTP", "SignetManaged", "SignetRenewal", "SignetPostgres",
                "SignetLogging",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strictness
        ),
    ]
)
