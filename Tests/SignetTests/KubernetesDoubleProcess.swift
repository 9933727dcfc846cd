import Foundation

/// The Kubernetes API test double (Tests/KubernetesDouble/kube_double.py) as a process on a free port, with a
/// kubeconfig for each of its tokens: `admin` may do anything, `gateway` only in namespace istio-system.
final class KubernetesDoubleProcess: @unchecked Sendable {
    // @unchecked: the Process is only touched from the test that owns this value.
    let directory: String
    let port: Int
    let process: Process

    var url: String { "https://127.0.0.1:\(port)" }
    var caFile: String { directory + "/ca.crt" }

    /// `certificateNames`: the only DNS names of its serving certificate (none: localhost, 127.0.0.1 and ::1).
    init(certificateNames: [String] = []) throws {
        directory = try Fixtures.temporaryDirectory("kube-double")
        (process, port) = try PythonDouble.launch(
            "KubernetesDouble/kube_double.py",
            arguments: ["--dir", directory, "--token", "admin=*", "--token", "gateway=istio-system"]
                + certificateNames.flatMap { ["--tls-dns-name", $0] },
            name: "the Kubernetes double"
        )
        for user in ["admin", "gateway"] {
            try kubeconfigText(token: user).write(to: kubeconfig(user))
        }
    }

    func kubeconfig(_ user: String = "admin") -> String { directory + "/kubeconfig-\(user)" }

    func kubeconfigText(token: String, namespace: String = "istio-system") -> String {
        """
        apiVersion: v1
        kind: Config
        clusters:
        - name: double
          cluster:
            server: \(url)
            certificate-authority: \(caFile)
        users:
        - name: user
          user:
            token: \(token)
        contexts:
        - name: double
          context: {cluster: double, user: user, namespace: \(namespace)}
        current-context: double

        """
    }

    /// Real kubectl against the double, with a discovery cache of its own.
    func kubectl(_ arguments: [String], user: String = "admin", input: String? = nil) throws -> Tool.Result {
        try Tool.run(
            "kubectl", ["--kubeconfig", kubeconfig(user), "--cache-dir", directory + "/kubectl-cache"] + arguments,
            input: input)
    }

    /// A Secret as JSON, read with kubectl.
    func secret(_ namespace: String, _ name: String) throws -> [String: Any]? {
        let result = try kubectl(["get", "secret", name, "-n", namespace, "-o", "json"])
        guard result.succeeded else { return nil }
        return try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
    }

    func admin(_ path: String, _ body: [String: Any] = [:]) throws {
        let text = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
        let result = try Tool.run(
            "curl", ["-sf", "--cacert", caFile, "-X", "POST", "--data-binary", "@-", url + "/_admin/" + path],
            input: text)
        guard result.succeeded else { throw Tool.ToolMissing(name: "the double's admin endpoint (\(result.error))") }
    }

    /// A projected service-account token, minted and signed by the double as the API server would. With `rbac`, the
    /// token may do against the double exactly what the RBAC loaded by `loadRBAC` grants its service account.
    func serviceAccountToken(
        namespace: String, account: String, audiences: [String] = ["signet"], seconds: Int = 3600,
        revoked: Bool = false, rbac: Bool = false
    ) throws -> String {
        let body: [String: Any] = [
            "namespace": namespace, "serviceAccount": account, "audiences": audiences, "expirationSeconds": seconds,
            "revoked": revoked, "rbac": rbac,
        ]
        let text = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
        let answer = try Tool.run(
            "curl", ["-sf", "--cacert", caFile, "-X", "POST", "--data-binary", "@-", url + "/_admin/token"], input: text
        )
        guard let json = try JSONSerialization.jsonObject(with: Data(answer.output.utf8)) as? [String: Any],
            let token = json["token"] as? String
        else {
            throw Tool.ToolMissing(name: "a token from the double (\(answer.error))")
        }
        return token
    }

    /// Roles, ClusterRoles and their bindings from rendered manifests (other objects are ignored), which the double
    /// then evaluates as the API server's RBAC authorizer does for tokens minted with `rbac: true`.
    func loadRBAC(_ manifests: String) throws {
        let converted = try Tool.run(
            "python3",
            [
                "-c",
                "import sys, yaml, json; print(json.dumps({'objects': [d for d in yaml.safe_load_all(sys.stdin) if d]}))",
            ],
            input: manifests)
        guard converted.succeeded else { throw Tool.ToolMissing(name: "manifests as JSON (\(converted.error))") }
        let result = try Tool.run(
            "curl", ["-sf", "--cacert", caFile, "-X", "POST", "--data-binary", "@-", url + "/_admin/rbac"],
            input: converted.output)
        guard result.succeeded else { throw Tool.ToolMissing(name: "the double's RBAC endpoint (\(result.error))") }
    }

    /// A kubeconfig for the API double that authenticates with a service account's token, with exactly its RBAC.
    func kubeconfig(serviceAccount account: String, namespace: String) throws -> String {
        let token = try serviceAccountToken(
            namespace: namespace, account: account, audiences: ["https://kubernetes.default.svc.cluster.local"],
            rbac: true)
        let path = directory + "/kubeconfig-\(namespace)-\(account)"
        try kubeconfigText(token: token, namespace: namespace).write(to: path)
        return path
    }

    /// The RBAC that deploy/ grants, rendered with kustomize from the file-ca overlay, plus Secret access in each of
    /// `namespaces` made the documented way (a copy of deploy/namespace-access/istio-system for another namespace).
    static func deployedRBAC(extraNamespaces namespaces: [String]) throws -> String {
        var rendered = try Tool.run("kubectl", ["kustomize", Fixtures.packageRoot + "/deploy/overlays/file-ca"])
        guard rendered.succeeded else { throw Tool.ToolMissing(name: "kubectl kustomize (\(rendered.error))") }
        var all = rendered.output
        for namespace in namespaces {
            let directory = try Fixtures.temporaryDirectory("access-\(namespace)")
            // kustomize takes bases by relative path only.
            let depth = directory.split(separator: "/").count
            let base =
                String(repeating: "../", count: depth) + Fixtures.packageRoot.dropFirst()
                + "/deploy/namespace-access/base"
            try """
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            namespace: \(namespace)
            resources:
              - \(base)

            """.write(to: directory + "/kustomization.yaml")
            rendered = try Tool.run("kubectl", ["kustomize", directory])
            guard rendered.succeeded else {
                throw Tool.ToolMissing(name: "kubectl kustomize \(namespace) (\(rendered.error))")
            }
            all += "\n---\n" + rendered.output
        }
        return all
    }

    /// What the double counted: requests, lists (by `plural/namespace`), watches, expired_watches, injected faults.
    func stats() throws -> [String: Any] {
        let result = try Tool.run("curl", ["-sf", "--cacert", caFile, url + "/_admin/stats"])
        return (try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
    }

    /// events.k8s.io/v1 Events in a namespace, as the API returns them.
    func events(_ namespace: String) throws -> [[String: Any]] {
        let result = try Tool.run(
            "curl",
            [
                "-sf", "--cacert", caFile, "-H", "Authorization: Bearer admin",
                url + "/apis/events.k8s.io/v1/namespaces/\(namespace)/events",
            ])
        let list = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
        return list?["items"] as? [[String: Any]] ?? []
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}
