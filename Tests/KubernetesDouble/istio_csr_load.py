#!/usr/bin/env python3
"""Creates CertificateRequests as cert-manager's istio-csr does, approves them as cert-manager's approver does, and
waits until each is Issued or Failed; prints one JSON summary line.

istio-csr's shape: a fresh ECDSA P-256 key per workload, a CSR whose only name is the workload's SPIFFE ID (URI SAN,
empty subject), duration 1h, usages client and server auth, the identities annotation, the issuerRef of its
configuration. --foreign N of them ask for another namespace's identity (which the policy must refuse).
"""
import argparse
import base64
import http.client
import json
import ssl
import sys
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--foreign", type=int, default=0, help="how many ask for another namespace's identity")
    parser.add_argument("--issuer", default="signet")
    parser.add_argument("--kind", default="SignetClusterIssuer")
    parser.add_argument("--timeout", type=float, default=300)
    options = parser.parse_args()

    url = urllib.parse.urlsplit(options.api)
    connection = http.client.HTTPSConnection(url.hostname, url.port, context=ssl.create_default_context(cafile=options.cafile), timeout=30)
    headers = {"Authorization": f"Bearer {options.token}", "Accept": "application/json"}

    def call(method, path, body=None, content_type="application/json"):
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload, headers={**headers, **({"Content-Type": content_type} if payload else {})})
        answer = connection.getresponse()
        data = answer.read()
        if answer.status >= 300:
            raise RuntimeError(f"{method} {path}: {answer.status} {data[:300]!r}")
        return json.loads(data) if data else None

    base = f"/apis/cert-manager.io/v1/namespaces/{options.namespace}/certificaterequests"
    started = time.time()
    names = []
    for index in range(options.count):
        target = "team-b" if index < options.foreign else options.namespace
        identity = f"spiffe://cluster.local/ns/{target}/sa/workload-{index}"
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
               .sign(key, hashes.SHA256()))
        pem = csr.public_bytes(serialization.Encoding.PEM)
        name = f"istio-csr-{index:05d}"
        call("POST", base, {
            "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
            "metadata": {"name": name, "namespace": options.namespace, "annotations": {"istio.cert-manager.io/identities": identity}},
            "spec": {"request": base64.b64encode(pem).decode(), "duration": "1h0m0s", "isCA": False,
                     "usages": ["client auth", "server auth"],
                     "issuerRef": {"group": "signet.dev", "kind": options.kind, "name": options.issuer}},
        })
        call("PATCH", f"{base}/{name}/status", {"status": {"conditions": [{
            "type": "Approved", "status": "True", "reason": "cert-manager.io",
            "message": "Certificate request has been approved by cert-manager.io", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}},
            content_type="application/merge-patch+json")
        names.append(name)
    created = time.time() - started

    outcome = {}
    deadline = time.time() + options.timeout
    while time.time() < deadline:
        listed = call("GET", base)
        outcome = {}
        for item in listed["items"]:
            ready = next((c for c in item.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)
            outcome[item["metadata"]["name"]] = ready["reason"] if ready else "None"
        if all(outcome.get(name) in ("Issued", "Failed") for name in names):
            break
        time.sleep(0.5)
    counts = {}
    for name in names:
        counts[outcome.get(name, "None")] = counts.get(outcome.get(name, "None"), 0) + 1
    foreign_failed = all(outcome.get(names[index]) == "Failed" for index in range(options.foreign))
    print(json.dumps({"requests": len(names), "counts": counts, "foreignFailed": foreign_failed,
                      "createSeconds": round(created, 1), "totalSeconds": round(time.time() - started, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
