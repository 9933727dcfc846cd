#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests use, builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: SQLite headers (GRDB), the PKCS#11 header (p11-kit). Tests: openssl (chain checks, weak-key CSRs), nginx
# and haproxy (TLS gateway stand-ins; haproxy's runtime API swaps certificates like Istio's SDS), curl (the client
# the Istio tutorial uses), SoftHSM2 and pkcs11-tool (a PKCS#11 token), PostgreSQL (the tests make and start a
# throwaway cluster of their own on a loopback port, and stop it when they end).
bash scripts/ensure-packages.sh libsqlite3-dev libp11-kit-dev pkg-config openssl nginx haproxy curl python3-pip softhsm2 opensc \
    postgresql
# kubectl drives the Kubernetes API double (this image has gcloud's kubectl; Debian's kubernetes-client otherwise).
command -v kubectl >/dev/null || bash scripts/ensure-packages.sh kubernetes-client
# The Key Vault and Kubernetes doubles are Python (cryptography); Microsoft's SDK proves the vault double's fidelity;
# kubernetes-validate checks the manifests of deploy/ offline; Schemathesis fuzzes the API from api/openapi.yaml.
python3 -c 'import cryptography, azure.identity, azure.keyvault.keys, kubernetes_validate, schemathesis' 2>/dev/null ||
    python3 -m pip install -q cryptography azure-identity azure-keyvault-keys kubernetes-validate schemathesis

# ACME clients and the DNS server their dns-01 challenges use: certbot (with its RFC 2136 plugin) and lego from
# Debian, BIND (named, nsupdate, dig); a current certbot (ARI, profiles) from PyPI in its own virtualenv.
bash scripts/ensure-packages.sh certbot python3-certbot-dns-rfc2136 lego bind9 bind9-dnsutils python3-venv
certbot_venv=.build/acme-clients/certbot
[ -x "$certbot_venv/bin/certbot" ] || { python3 -m venv "$certbot_venv" && "$certbot_venv/bin/pip" install -q certbot; }

# The code's formatting (.swift-format: line length 120, as swift-certificates uses); generated code stays as generated.
swift format lint --strict -r $(ls -d Sources/*/ | grep -v SignetOpenAPI) Sources/SignetOpenAPI/RFC3339DateTranscoder.swift \
    Tests/SignetTests bench/signet-bench

# Building tests and products in one step, then running without rebuilding, avoids a second link of the graph.
started=$SECONDS
swift build --build-tests
built=$SECONDS
status=0
# The suite is bounded: a test that hangs ends the run with its output so far, well inside CI's 90 minutes.
timeout --kill-after=30 "${SIGNET_TEST_TIMEOUT:-2700}" swift test --skip-build "$@" || status=$?
[ $status -eq 124 ] && echo "the tests did not finish within ${SIGNET_TEST_TIMEOUT:-2700} s and were stopped" >&2
echo "suite duration: build $((built - started)) s, tests $((SECONDS - built)) s, in all $((SECONDS - started)) s"
exit $status
