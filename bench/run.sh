#!/usr/bin/env bash
# Signet against cfssl on loopback, same machine, same P-256 CA, same pre-generated P-256 CSRs.
# Usage: bash bench/run.sh [seconds per point, default 10]
# Prints issuances/s, p50, p99 and peak RSS for each concurrency, the in-process crypto ceiling, and the
# 1M-row ledger query times. Everything it starts is stopped when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-10}
rows=${SIGNET_BENCH_ROWS:-1000000}

bash scripts/ensure-packages.sh wrk golang-cfssl sqlite3 libsqlite3-dev openssl curl

echo "building release..." >&2
swift build -c release --product signet >&2
swift build -c release --product signet-bench >&2
bin=$(swift build -c release --show-bin-path)

work=$(mktemp -d /tmp/signet-bench.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }
peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

# One CA for both: Signet's `ca init` (P-256), the intermediate handed to cfssl as a SEC1 key.
"$bin/signet" ca init --dir "$work/ca" --org "Bench" >/dev/null
openssl ec -in "$work/ca/intermediate.key" -out "$work/ca/intermediate-sec1.key" 2>/dev/null
"$bin/signet-bench" csrs 4000 "$work"

# cfssl: `cfssl serve` with a SQLite certdb in WAL mode (synchronous=NORMAL, as measured in shared/baselines.md).
sqlite3 "$work/cfssl.db" <<'SQL' >/dev/null
PRAGMA journal_mode = WAL;
CREATE TABLE certificates (
  serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob, status blob NOT NULL,
  reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier));
CREATE TABLE ocsp_responses (
  serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, body blob NOT NULL, expiry timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier));
SQL
cat > "$work/cfssl-db.json" <<JSON
{"driver": "sqlite3", "data_source": "file:$work/cfssl.db?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000"}
JSON
cat > "$work/cfssl-config.json" <<'JSON'
{"signing": {"default": {"expiry": "2160h", "usages": ["digital signature", "server auth"]}}}
JSON
cfssl_port=$(free_port)
cfssl serve -address 127.0.0.1 -port "$cfssl_port" -ca "$work/ca/intermediate.crt" -ca-key "$work/ca/intermediate-sec1.key" \
    -config "$work/cfssl-config.json" -db-config "$work/cfssl-db.json" -loglevel 5 >"$work/cfssl.log" 2>&1 &
cfssl_pid=$!; pids+=("$cfssl_pid")
wait_http "http://127.0.0.1:$cfssl_port/api/v1/cfssl/info" || { cat "$work/cfssl.log"; exit 1; }

# Signet: plain HTTP like cfssl (TLS is not what is compared), ledger synchronous=FULL (stronger than cfssl's NORMAL).
signet_port=$(free_port)
SIGNET_DATA_DIR="$work/signet" SIGNET_CA_DIR="$work/ca" SIGNET_TLS=http SIGNET_LISTEN="127.0.0.1:$signet_port" \
    SIGNET_DURABILITY=full "$bin/signet" serve --log-level warning >"$work/signet.log" 2>&1 &
signet_pid=$!; pids+=("$signet_pid")
wait_http "http://127.0.0.1:$signet_port/healthz" || { cat "$work/signet.log"; exit 1; }
token=$(SIGNET_DATA_DIR="$work/signet" "$bin/signet" token create --name bench --allow '*.example.com' 2>/dev/null)

run_point() { # service url bodies token concurrency -> "rate p50_ms p99_ms errors"
    local threads=$(( $5 < 2 ? 1 : 2 ))
    local line
    line=$(wrk -t "$threads" -c "$5" -d "${seconds}s" --timeout 5s -s bench/issue.lua "$2" -- "$3" "$4" | grep '^RESULT')
    python3 - "$line" <<'PY'
import sys
fields = dict(item.split("=") for item in sys.argv[1].split()[1:])
rate = int(fields["requests"]) / (int(fields["duration_us"]) / 1e6)
print(f'{rate:.0f} {int(fields["p50_us"])/1000:.2f} {int(fields["p99_us"])/1000:.2f} {int(fields["socket_errors"]) + int(fields["non2xx"])}')
PY
}

# Warm both up (JIT-free, but page cache, connection pools and SQLite caches).
run_point cfssl "http://127.0.0.1:$cfssl_port/api/v1/cfssl/sign" "$work/cfssl-bodies.txt" "" 8 >/dev/null
run_point signet "http://127.0.0.1:$signet_port/v1/certificates" "$work/signet-bodies.txt" "$token" 8 >/dev/null

printf '\n%-6s | %-34s | %-34s | %s\n' "conc." "cfssl 1.2 (SQLite WAL, sync=NORMAL)" "Signet (SQLite WAL, sync=FULL)" "Signet/cfssl"
printf '%-6s | %-34s | %-34s | %s\n' "" "issued/s   p50 ms   p99 ms  errors" "issued/s   p50 ms   p99 ms  errors" "issued/s"
for concurrency in 1 8 64; do
    read -r c_rate c_p50 c_p99 c_err < <(run_point cfssl "http://127.0.0.1:$cfssl_port/api/v1/cfssl/sign" "$work/cfssl-bodies.txt" "" "$concurrency")
    read -r s_rate s_p50 s_p99 s_err < <(run_point signet "http://127.0.0.1:$signet_port/v1/certificates" "$work/signet-bodies.txt" "$token" "$concurrency")
    ratio=$(python3 -c "print(f'{$s_rate / max($c_rate, 1):.2f}x')")
    printf '%-6s | %8s %8s %8s %7s | %8s %8s %8s %7s | %s\n' "$concurrency" "$c_rate" "$c_p50" "$c_p99" "$c_err" "$s_rate" "$s_p50" "$s_p99" "$s_err" "$ratio"
done
printf 'peak RSS: cfssl %s MB, Signet %s MB\n' "$(peak_rss_mb "$cfssl_pid")" "$(peak_rss_mb "$signet_pid")"
printf 'rows recorded: cfssl %s, Signet %s (every 201 is a committed row)\n' \
    "$(sqlite3 "$work/cfssl.db" 'select count(*) from certificates')" \
    "$(sqlite3 "$work/signet/ledger.sqlite" "select count(*) from certificates where requester = 'token:bench'")"
kill "$cfssl_pid" "$signet_pid"

echo
"$bin/signet-bench" ceiling 5 | sed 's/^CEILING /in-process ceiling (parse + verify CSR, build + sign, no HTTP, no SQLite): /'

echo
echo "ledger queries with $rows rows (first run fills the file; SIGNET_BENCH_ROWS to change):"
"$bin/signet-bench" ledger "$rows" "${SIGNET_BENCH_LEDGER:-$work/ledger-1m.sqlite}" | sed 's/^QUERY /  /; s/^LEDGER /  /'
