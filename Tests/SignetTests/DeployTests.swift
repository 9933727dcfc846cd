import Foundation
import SignetACME
import SignetKubernetes
import SignetPostgres
import SignetServer
import Testing

/// deploy/: every overlay renders with kubectl kustomize, every object passes offline schema validation (the
/// Kubernetes API's schemas, the CRD's own schema, Istio's Gateway fields), and the configuration Signet is given
/// there is configuration Signet accepts.
@Suite("deploy/: kustomize overlays, validated offline")
struct DeployTests {
    static let overlays = ["file-ca", "keyvault", "ha"]

    func validate(_ rendered: String) throws -> Tool.Result {
        try Tool.run(
            "python3",
            [
                Fixtures.packageRoot + "/Tests/Deploy/validate_manifests.py", "-",
                "--schema",
                "networking.istio.io/v1/Gateway=" + Fixtures.packageRoot + "/Tests/Deploy/istio-gateway.schema.json",
            ], input: rendered)
    }

    @Test("each overlay renders and validates", arguments: overlays)
    func overlayValidates(overlay: String) throws {
        let rendered = try Tool.run("kubectl", ["kustomize", Fixtures.packageRoot + "/deploy/overlays/" + overlay])
        #expect(rendered.succeeded, "\(rendered.error)")
        let checked = try validate(rendered.output)
        #expect(
            checked.succeeded && checked.output.contains(", 0 failing") && !checked.output.contains("UNCHECKED"),
            "\(checked.output)\(checked.error)")
        // The ha overlay keeps its ledger in PostgreSQL (no volume claim) and bounds disruptions instead.
        let storage = overlay == "ha" ? "PodDisruptionBudget" : "PersistentVolumeClaim"
        for kind in [
            "CustomResourceDefinition", "Deployment", "ClusterRole", "Role", "Service", storage, "ConfigMap", "Gateway",
            "Certificate",
        ] {
            #expect(checked.output.contains("ok      \(kind) "), "\(kind) missing from \(overlay)")
        }
    }

    func checkRBAC(_ rendered: String) throws -> Tool.Result {
        try Tool.run(
            "python3",
            [
                Fixtures.packageRoot + "/Tests/Deploy/check_rbac.py", "-",
                "--ca-secret", "signet-system/signet-ca", "--server", "signet-system/signet",
            ], input: rendered)
    }

    @Test(
        "least privilege: no ClusterRole touches Secrets, and only the server could get the CA key Secret",
        arguments: overlays)
    func leastPrivilege(overlay: String) throws {
        let rendered = try Tool.run("kubectl", ["kustomize", Fixtures.packageRoot + "/deploy/overlays/" + overlay])
            .output
        let checked = try checkRBAC(rendered)
        #expect(checked.succeeded && checked.output.contains(" 0 violations"), "\(checked.output)\(checked.error)")
        // Secrets are reachable where Signet delivers (the examples' istio-system), by namespaced Roles.
        #expect(rendered.contains("name: signet-server-delivery\n  namespace: istio-system"), "\(rendered)")
        #expect(rendered.contains("name: signet-controller-secrets\n  namespace: istio-system"))
        // The controller gets the root certificate from a ConfigMap, not from the CA's Secret.
        #expect(rendered.contains("path: root.crt\n          name: signet-root"), "\(rendered)")
    }

    @Test(
        "the RBAC check fails on a cluster-wide Secret grant, and on a Role letting the controller read the CA Secret")
    func rbacCheckCatchesMistakes() throws {
        let rendered = try Tool.run("kubectl", ["kustomize", Fixtures.packageRoot + "/deploy/overlays/file-ca"]).output
        let clusterWide =
            rendered + """
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: ClusterRole
                metadata: {name: too-much}
                rules:
                - {apiGroups: [""], resources: [secrets], verbs: [list]}
                """
        let first = try checkRBAC(clusterWide)
        #expect(!first.succeeded && first.output.contains("VIOLATION ClusterRole too-much"), "\(first.output)")
        let caReader =
            rendered + """
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: Role
                metadata: {name: peek, namespace: signet-system}
                rules:
                - {apiGroups: [""], resources: [secrets], verbs: [get], resourceNames: [signet-ca]}
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: RoleBinding
                metadata: {name: peek, namespace: signet-system}
                roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: peek}
                subjects:
                - {kind: ServiceAccount, name: signet-controller, namespace: signet-system}
                """
        let second = try checkRBAC(caReader)
        #expect(
            !second.succeeded
                && second.output.contains("signet-system/signet-controller get Secret signet-system/signet-ca"),
            "\(second.output)")
    }

    @Test(
        "the validator rejects what the API server would: a wrong type, an unknown field, a value outside the CRD's enum"
    )
    func validatorCatchesMistakes() throws {
        let rendered = try Tool.run("kubectl", ["kustomize", Fixtures.packageRoot + "/deploy/overlays/file-ca"]).output
        for (broken, expected) in [
            (
                rendered.replacingOccurrences(of: "replicas: 2", with: "replicas: two"),
                "Deployment signet-system/signet-controller"
            ),
            (
                rendered.replacingOccurrences(of: "rotationPolicy: Always", with: "rotationPolicy: Sometimes"),
                "Certificate istio-system/bookinfo-client"
            ),
            (
                rendered.replacingOccurrences(
                    of: "  secretName: bookinfo-client", with: "  secretName: bookinfo-client\n  colour: blue"),
                "Certificate istio-system/bookinfo-client"
            ),
            (
                rendered.replacingOccurrences(of: "mode: MUTUAL", with: "mode: MUTUALLY"),
                "Gateway istio-system/mygateway"
            ),
        ] {
            let checked = try validate(broken)
            #expect(!checked.succeeded && checked.output.contains("INVALID \(expected)"), "\(checked.output)")
        }
    }

    @Test(
        "the cert-manager ACME ClusterIssuer example validates against cert-manager's API fields and names the base's ACME directory"
    )
    func certManagerExample() throws {
        let path = Fixtures.packageRoot + "/deploy/examples/cert-manager-acme/cluster-issuer.yaml"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let schema = Fixtures.packageRoot + "/Tests/Deploy/cert-manager.schema.json"
        let checked = try Tool.run(
            "python3",
            [
                Fixtures.packageRoot + "/Tests/Deploy/validate_manifests.py", "-",
                "--schema", "cert-manager.io/v1/ClusterIssuer=\(schema)#ClusterIssuer",
                "--schema", "cert-manager.io/v1/Certificate=\(schema)#Certificate",
            ], input: text)
        #expect(
            checked.succeeded && checked.output.contains("2 documents, 0 failing"), "\(checked.output)\(checked.error)")
        let broken = try Tool.run(
            "python3",
            [
                Fixtures.packageRoot + "/Tests/Deploy/validate_manifests.py", "-",
                "--schema", "cert-manager.io/v1/ClusterIssuer=\(schema)#ClusterIssuer",
                "--schema", "cert-manager.io/v1/Certificate=\(schema)#Certificate",
            ],
            input: text.replacingOccurrences(of: "keySecretRef:", with: "keySecret:"))
        #expect(
            !broken.succeeded && broken.output.contains("INVALID ClusterIssuer"),
            "a misspelt field is caught: \(broken.output)")
        let configuration = try ServerConfiguration.load(
            path: Fixtures.packageRoot + "/deploy/base/signet.yaml", environment: [:])
        let directory = try #require(configuration.acme.directory(named: "cluster"))
        #expect(directory.externalAccountRequired)
        #expect(text.contains("server: \(configuration.acmeBaseURL)/acme/cluster/directory"))
    }

    @Test(
        "the cert-manager external-issuer example: its SignetClusterIssuer validates against deploy/base/issuers.yaml's CRD, its Certificate against cert-manager's fields, and it names the base's controller server"
    )
    func certManagerIssuerExample() throws {
        let directory = Fixtures.packageRoot + "/deploy/examples/cert-manager-issuer"
        let text =
            try String(contentsOfFile: Fixtures.packageRoot + "/deploy/base/issuers.yaml", encoding: .utf8) + "\n---\n"
            + String(contentsOfFile: directory + "/cluster-issuer.yaml", encoding: .utf8) + "\n---\n"
            + String(contentsOfFile: directory + "/certificate.yaml", encoding: .utf8)
        let schema = Fixtures.packageRoot + "/Tests/Deploy/cert-manager.schema.json"
        func validate(_ input: String) throws -> Tool.Result {
            try Tool.run(
                "python3",
                [
                    Fixtures.packageRoot + "/Tests/Deploy/validate_manifests.py", "-",
                    "--schema", "cert-manager.io/v1/Certificate=\(schema)#Certificate",
                ], input: input)
        }
        let checked = try validate(text)
        #expect(
            checked.succeeded && checked.output.contains("4 documents, 0 failing"), "\(checked.output)\(checked.error)")
        let broken = try validate(
            text.replacingOccurrences(of: "  namespaces: [istio-system]", with: "  namespace: [istio-system]"))
        #expect(
            !broken.succeeded && broken.output.contains("INVALID SignetClusterIssuer"),
            "a misspelt field is caught: \(broken.output)")
        let controller = try String(
            contentsOfFile: Fixtures.packageRoot + "/deploy/base/controller.yaml", encoding: .utf8)
        #expect(
            controller.contains("--server=https://signet.signet-system.svc:8443")
                && controller.contains("--cert-manager"))
        #expect(
            text.contains("url: https://signet.signet-system.svc:8443"), "the issuer names the controller's own server")
    }

    @Test(
        "the ha overlay: three replicas rolled one at a time, spread over nodes, at least two through a drain, the database password and ledger key from Secrets, ready only with the database, no volume claim"
    )
    func highAvailability() throws {
        let rendered = try Tool.run("kubectl", ["kustomize", Fixtures.packageRoot + "/deploy/overlays/ha"]).output
        let documents = rendered.components(separatedBy: "\n---\n")
        let server = try #require(
            documents.first { $0.contains("kind: Deployment") && $0.contains("name: signet-server\n") })
        for expected in [
            "replicas: 3", "type: RollingUpdate", "maxUnavailable: 0", "topologyKey: kubernetes.io/hostname",
            "whenUnsatisfiable: DoNotSchedule", "name: SIGNET_DATABASE_PASSWORD", "name: signet-database",
            "name: SIGNET_LEDGER_KEY", "name: signet-ledger-key", "path: /readyz", "emptyDir: {}",
        ] {
            #expect(server.contains(expected), "\(expected) in the server's Deployment")
        }
        #expect(!rendered.contains("kind: PersistentVolumeClaim") && !server.contains("claimName"))
        let budget = try #require(documents.first { $0.contains("kind: PodDisruptionBudget") })
        #expect(budget.contains("minAvailable: 2") && budget.contains("namespace: signet-system"))
        let configuration = try ServerConfiguration.load(
            path: Fixtures.packageRoot + "/deploy/overlays/ha/signet.yaml",
            environment: ["SIGNET_DATABASE_PASSWORD": "from-the-secret"])
        guard case .postgres(let settings) = try configuration.ledgerDatabase() else {
            Issue.record("the ha overlay's ledger is PostgreSQL")
            return
        }
        #expect(settings.tlsMode == .verifyFull && settings.password == "from-the-secret")
    }

    @Test("the signet.yaml of each overlay is a configuration signet serve accepts")
    func configurationsLoad() throws {
        for path in [
            "deploy/base/signet.yaml", "deploy/overlays/keyvault/signet.yaml", "deploy/overlays/ha/signet.yaml",
        ] {
            let configuration = try ServerConfiguration.load(path: Fixtures.packageRoot + "/" + path, environment: [:])
            #expect(
                configuration.serviceAccounts?.controllers.map(\.description) == ["signet-system/signet-controller"],
                "\(path)")
            #expect(configuration.clusters.map(\.name) == ["local"])
        }
        #expect(
            try ServerConfiguration.load(
                path: Fixtures.packageRoot + "/deploy/overlays/keyvault/signet.yaml", environment: [:]
            ).keyVault?.keyName == "signet-intermediate")
    }
}
