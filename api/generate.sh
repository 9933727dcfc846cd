#!/usr/bin/env bash
# Regenerates the server types from api/openapi.yaml with swift-openapi-generator.
# The generator is built in a throwaway package so that building Signet never pays for it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tool=${OPENAPI_GENERATOR_DIR:-/tmp/signet-openapi-generator}
mkdir -p "$tool"
cat > "$tool/Package.swift" <<'MANIFEST'
// swift-tools-version:6.2
import PackageDescription
let package = Package(
    name: "signet-openapi-generator",
    dependencies: [.package(url: "https://github.com/apple/swift-openapi-generator", exact: "1.14.3")],
    targets: []
)
MANIFEST
swift build --package-path "$tool" --product swift-openapi-generator >&2
"$tool/.build/debug/swift-openapi-generator" generate \
    --config "$here/api/openapi-generator-config.yaml" \
    --output-directory "$here/Sources/SignetOpenAPI/Generated" \
    "$here/api/openapi.yaml"
