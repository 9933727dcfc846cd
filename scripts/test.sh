#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests use, builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# SQLite headers (GRDB), openssl (chain checks, weak-key CSRs), nginx (the TLS gateway stand-in) and curl (the
# client the Istio tutorial uses).
bash scripts/ensure-packages.sh libsqlite3-dev openssl nginx curl

# Building tests and products in one step, then running without rebuilding, avoids a second link of the graph.
swift build --build-tests
swift test --skip-build "$@"
