#!/usr/bin/env bash
# Starts a working issuer on a fresh Debian machine: installs the SQLite and PKCS#11 headers if needed, builds, and runs
# `signet serve` with any arguments given (none: ./signet-data, a development CA, https://127.0.0.1:8443).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-packages.sh libsqlite3-dev libp11-kit-dev pkg-config
exec swift run signet serve "$@"
