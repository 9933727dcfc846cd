#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests use, builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build and the tests need: SQLite headers (GRDB), openssl (chain checks, weak-key CSRs),
# nginx (the TLS gateway stand-in) and curl (the client the Istio tutorial uses).
needed=(libsqlite3-dev openssl nginx curl)
missing=()
for package in "${needed[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Building tests and products in one step, then running without rebuilding, avoids a second link of the graph.
swift build --build-tests
swift test --skip-build "$@"
