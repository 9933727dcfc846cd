import Foundation
import SignetKubernetes
import SignetServer
import Testing

/// deploy/: every overlay renders with kubectl kustomize, every object passes offline schema validation (the
/// Kubernetes API's schemas, the CRD's own schema, Istio's Gateway fields), and the configuration Signet is given
/// there is configuration Signet accepts.
@Suite("deploy/: kustomize overlays, validated offline")
struct DeployTests {
    static let overlays = ["file-ca", "keyvault"]

    func validate(_ rendered: String) throws -> Tool.Result {
        try Tool.run("python3", [Fixtures.packageRoot + "/Tests/Deploy/validate_manifests.py", "-",
                                 "--schema", "networking.istio.io/v1/Gateway=" + Fixtures.packageRoot + "/Tests/Deploy/istio-gateway.schema.json"], input: rendered)
    }

    @Test("each overlay renders and validates", arguments: overlays)
    func overlayValidates(overlay: String) throws {
        let rendered = try Tool.run("kubectl", ["kustomize", Fixtures.packageRoot + "/deploy/overlays/" + overlay])
        #expect(rendered.succeeded, "\(rendered.error)")
        let checked = try validate(rendered.output)
        #expect(checked.succeeded && checked.output.contains(", 0 failing") && !checked.output.contains("UNCHECKED"), "\(checked.output)\(checked.error)")
        for kind in ["CustomResourceDefinition", "Deployment", "ClusterRole", "Role", "Service", "PersistentVolumeClaim", "ConfigMap", "Gateway", "Certificate"] {
            #expect(checked.output.contains("ok      \(kind) "), "\(kind) missing from \(overlay)")
        }
    }

    @Test("the validator rejects what the API server would: a wrong type, an unknown field, a value outside the CRD's enum")
    func validatorCatchesMistakes() throws {
        let rendered = try Tool.run("kubectl", ["kustomize", Fixtures.packageRoot + "/deploy/overlays/file-ca"]).output
        for (broken, expected) in [
            (rendered.replacingOccurrences(of: "replicas: 2", with: "replicas: two"), "Deployment signet-system/signet-controller"),
            (rendered.replacingOccurrences(of: "rotationPolicy: Always", with: "rotationPolicy: Sometimes"), "Certificate istio-system/bookinfo-client"),
            (rendered.replacingOccurrences(of: "  secretName: bookinfo-client", with: "  secretName: bookinfo-client\n  colour: blue"), "Certificate istio-system/bookinfo-client"),
            (rendered.replacingOccurrences(of: "mode: MUTUAL", with: "mode: MUTUALLY"), "Gateway istio-system/mygateway"),
        ] {
            let checked = try validate(broken)
            #expect(!checked.succeeded && checked.output.contains("INVALID \(expected)"), "\(checked.output)")
        }
    }

    @Test("the signet.yaml of each overlay is a configuration signet serve accepts")
    func configurationsLoad() throws {
        for path in ["deploy/base/signet.yaml", "deploy/overlays/keyvault/signet.yaml"] {
            let configuration = try ServerConfiguration.load(path: Fixtures.packageRoot + "/" + path, environment: [:])
            #expect(configuration.serviceAccounts?.controllers.map(\.description) == ["signet-system/signet-controller"], "\(path)")
            #expect(configuration.clusters.map(\.name) == ["local"])
        }
        #expect(try ServerConfiguration.load(path: Fixtures.packageRoot + "/deploy/overlays/keyvault/signet.yaml", environment: [:]).keyVault?.keyName == "signet-intermediate")
    }
}
