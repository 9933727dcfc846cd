#!/usr/bin/env python3
"""Least privilege in rendered manifests (`kubectl kustomize ... | check_rbac.py - --ca-secret NS/NAME --server NS/SA`).

Fails (exit 1, one line per violation) when
- any ClusterRole grants anything on Secrets (cluster-wide Secret access reaches every tenant's keys), or
- any subject other than the server's service account can `get` the CA key Secret, through a Role or ClusterRole
  bound in its namespace or a ClusterRoleBinding.
RBAC is evaluated as the API server does: apiGroups "" or "*", resources "secrets" or "*", verbs "get" or "*", and
resourceNames empty or naming the Secret.
"""
import argparse
import sys

import yaml


def grants(rules, verb, group, resource, name=None):
    for rule in rules or []:
        if not (set(rule.get("apiGroups", [])) & {group, "*"}):
            continue
        if not (set(rule.get("resources", [])) & {resource, "*"}):
            continue
        if not (set(rule.get("verbs", [])) & {verb, "*"}):
            continue
        names = rule.get("resourceNames") or []
        if names and name not in names:
            continue
        return True
    return False


def touches_secrets(rules):
    return any(set(rule.get("resources", [])) & {"secrets", "*"} and set(rule.get("apiGroups", [])) & {"", "*"}
               for rule in rules or [])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--ca-secret", required=True, help="NAMESPACE/NAME of the CA key Secret")
    parser.add_argument("--server", required=True, help="NAMESPACE/NAME of the one service account that may read it")
    args = parser.parse_args()
    text = sys.stdin.read() if args.path == "-" else open(args.path).read()
    documents = [d for d in yaml.safe_load_all(text) if d]
    ca_namespace, ca_name = args.ca_secret.split("/", 1)
    server_namespace, server_name = args.server.split("/", 1)

    def of_kind(kind):
        return [d for d in documents if d.get("kind") == kind]

    roles = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d.get("rules") for d in of_kind("Role")}
    cluster_roles = {d["metadata"]["name"]: d.get("rules") for d in of_kind("ClusterRole")}
    violations = []
    for name, rules in cluster_roles.items():
        if touches_secrets(rules):
            violations.append(f"ClusterRole {name} grants access to secrets cluster-wide")

    bindings = [(d, d["metadata"].get("namespace")) for d in of_kind("RoleBinding")] + [(d, None) for d in of_kind("ClusterRoleBinding")]
    for binding, namespace in bindings:
        if namespace not in (None, ca_namespace):
            continue
        reference = binding.get("roleRef", {})
        if reference.get("kind") == "Role":
            rules = roles.get((namespace, reference.get("name")))
        else:
            rules = cluster_roles.get(reference.get("name"))
        if rules is None or not grants(rules, "get", "", "secrets", ca_name):
            continue
        for subject in binding.get("subjects") or []:
            who = (subject.get("kind"), subject.get("namespace", namespace), subject.get("name"))
            if who != ("ServiceAccount", server_namespace, server_name):
                violations.append(f"{binding['kind']} {namespace or ''}/{binding['metadata']['name']} lets {who[0]} "
                                  f"{who[1] or ''}/{who[2]} get Secret {args.ca_secret}")

    for line in violations:
        print("VIOLATION " + line)
    print(f"rbac: {len(cluster_roles)} ClusterRoles, {len(roles)} Roles, {len(bindings)} bindings, {len(violations)} violations")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
