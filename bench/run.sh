#!/usr/bin/env bash
# Signet against cfssl on loopback, same machine, same P-256 CA, same pre-generated P-256 CSRs; then Signet with
# its CA key in (the double of) Azure Key Vault and on a SoftHSM2 token, against the key file.
# Usage: bash bench/run.sh [seconds per point, default 10] [all|cfssl|signers|vault|hsm|acme|ocsp|replicas, default all]
# Prints issuances/s, p50, p99 and peak RSS for each concurrency, the in-process crypto ceiling, the 1M-row
# ledger query times, the remote-signer table, and the ACME order flow against Pebble. Everything it starts is stopped when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-10}
mode=${2:-all}
rows=${SIGNET_BENCH_ROWS:-1000000}

bash scripts/ensure-packages.sh wrk golang-cfssl sqlite3 libsqlite3-dev libp11-kit-dev pkg-config openssl curl \
    python3-pip softhsm2 opensc
python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install -q cryptography

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
cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

run_point() { # service url bodies token concurrency -> "rate p50_ms p99_ms errors"; the 2xx count goes to $work/last-ok
    local threads=$(( $5 < 2 ? 1 : 2 ))
    local line
    line=$(wrk -t "$threads" -c "$5" -d "${seconds}s" --timeout 5s -s bench/issue.lua "$2" -- "$3" "$4" | grep '^RESULT')
    python3 - "$line" "$work/last-ok" <<'PY'
import sys
fields = dict(item.split("=") for item in sys.argv[1].split()[1:])
open(sys.argv[2], "w").write(fields["ok"])
rate = int(fields["requests"]) / (int(fields["duration_us"]) / 1e6)
print(f'{rate:.0f} {int(fields["p50_us"])/1000:.2f} {int(fields["p99_us"])/1000:.2f} {int(fields["socket_errors"]) + int(fields["non2xx"])}')
PY
}

# `signet serve` NAME on a free port over plain HTTP (TLS is not what is compared), ledger synchronous=FULL,
# with the extra environment given. Sets $signet_pid, $signet_url and $token (allowed *.example.com).
start_signet() {
    local name=$1; shift
    local port
    port=$(free_port)
    # The per-caller issuance limit is off: one token drives every point.
    env SIGNET_DATA_DIR="$work/$name" SIGNET_TLS=http SIGNET_LISTEN="127.0.0.1:$port" SIGNET_DURABILITY=full \
        SIGNET_LIMIT_ISSUANCES_PER_SECOND=0 "$@" \
        "$bin/signet" serve --log-level warning >"$work/$name.log" 2>&1 &
    signet_pid=$!; pids+=("$signet_pid")
    signet_url="http://127.0.0.1:$port/v1/certificates"
    wait_http "http://127.0.0.1:$port/healthz" || { cat "$work/$name.log"; exit 1; }
    token=$(SIGNET_DATA_DIR="$work/$name" "$bin/signet" token create --name bench --allow '*.example.com' 2>/dev/null)
}

# One CA for all: Signet's `ca init` (P-256), the intermediate handed to cfssl as a SEC1 key.
"$bin/signet" ca init --dir "$work/ca" --org "Bench" >/dev/null
openssl ec -in "$work/ca/intermediate.key" -out "$work/ca/intermediate-sec1.key" 2>/dev/null
"$bin/signet-bench" csrs 4000 "$work"

bench_cfssl() {
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

    # Signet: plain HTTP like cfssl, ledger synchronous=FULL (stronger than cfssl's NORMAL), and a second one with
    # durability normal (synchronous=NORMAL, cfssl's own setting) on the same CA.
    start_signet signet SIGNET_CA_DIR="$work/ca"
    local full_url=$signet_url full_token=$token full_pid=$signet_pid
    start_signet signet-normal SIGNET_CA_DIR="$work/ca" SIGNET_DURABILITY=normal
    local normal_url=$signet_url normal_token=$token normal_pid=$signet_pid

    # Warm them up (JIT-free, but page cache, connection pools and SQLite caches).
    run_point cfssl "http://127.0.0.1:$cfssl_port/api/v1/cfssl/sign" "$work/cfssl-bodies.txt" "" 8 >/dev/null
    run_point signet "$full_url" "$work/signet-bodies.txt" "$full_token" 8 >/dev/null
    run_point signet "$normal_url" "$work/signet-bodies.txt" "$normal_token" 8 >/dev/null

    # Each cell: issued/s, p50 and p99 ms, errors, and the server's own CPU time (user + system, from procfs) per
    # issuance in µs: what the stack spends on one certificate, whatever the cores.
    printf '\n%-6s | %-40s | %-40s | %-40s | %s\n' "conc." "cfssl 1.2 (SQLite WAL, sync=NORMAL)" \
        "Signet, durability full (sync=FULL)" "Signet, durability normal (sync=NORMAL)" "Signet full/cfssl"
    printf '%-6s | %-40s | %-40s | %-40s | %s\n' "" "issued/s  p50 ms  p99 ms  err  CPU µs" \
        "issued/s  p50 ms  p99 ms  err  CPU µs" "issued/s  p50 ms  p99 ms  err  CPU µs" "issued/s"
    signet_rows() { sqlite3 "$work/$1/ledger.sqlite" "select count(*) from certificates where requester = 'token:bench'"; }
    # measure NAME URL BODIES TOKEN PID CONCURRENCY -> the cell; Signet's points also check every 201 is a row.
    measure() {
        local rows_before cpu_before rate p50 p99 errors ok rows_added
        [ "$1" = cfssl ] || rows_before=$(signet_rows "$1")
        cpu_before=$(cpu_seconds "$5")
        read -r rate p50 p99 errors < <(run_point "$1" "$2" "$3" "$4" "$6")
        ok=$(cat "$work/last-ok")
        local cpu_us
        cpu_us=$(python3 -c "print(round(($(cpu_seconds "$5") - $cpu_before) * 1e6 / max($ok, 1)))")
        if [ "$1" != cfssl ]; then
            # Every 201 wrk counted must be a committed row; beyond them, at most the requests still in flight when
            # wrk stopped (answered after it stopped counting) may have been recorded.
            rows_added=$(( $(signet_rows "$1") - rows_before ))
            if (( rows_added < ok || rows_added > ok + $6 )); then
                echo "MISMATCH at concurrency $6: wrk counted $ok 2xx, the ledger of $1 gained $rows_added rows" >&2
            fi
        fi
        printf '%8s %7s %7s %4s %7s' "$rate" "$p50" "$p99" "$errors" "$cpu_us"
        echo "$rate" >"$work/last-rate"
    }
    for concurrency in 1 8 64; do
        local c_cell s_cell n_cell c_rate s_rate
        c_cell=$(measure cfssl "http://127.0.0.1:$cfssl_port/api/v1/cfssl/sign" "$work/cfssl-bodies.txt" "" "$cfssl_pid" "$concurrency")
        c_rate=$(cat "$work/last-rate")
        s_cell=$(measure signet "$full_url" "$work/signet-bodies.txt" "$full_token" "$full_pid" "$concurrency")
        s_rate=$(cat "$work/last-rate")
        n_cell=$(measure signet-normal "$normal_url" "$work/signet-bodies.txt" "$normal_token" "$normal_pid" "$concurrency")
        ratio=$(python3 -c "print(f'{$s_rate / max($c_rate, 1):.2f}x')")
        printf '%-6s | %-40s | %-40s | %-40s | %s\n' "$concurrency" "$c_cell" "$s_cell" "$n_cell" "$ratio"
    done

    # The floors of the same run, each with its CPU per request: Signet's /healthz (the HTTP stack, routing,
    # middleware), and the bare stack, a Hummingbird 2 server with one constant GET route (signet-bench floor).
    printf '/healthz\n' >"$work/healthz-path.txt"
    floor_point() { # LABEL BASE_URL PID -> one line
        local cpu_before line
        cpu_before=$(cpu_seconds "$3")
        line=$(wrk -t 2 -c 8 -d "${seconds}s" --timeout 5s -s bench/get.lua "$2" -- "$work/healthz-path.txt" | grep '^RESULT')
        python3 - "$1" "$line" "$cpu_before" "$(cpu_seconds "$3")" <<'PY'
import sys
fields = dict(item.split("=") for item in sys.argv[2].split()[1:])
requests = int(fields["requests"])
rate = requests / (int(fields["duration_us"]) / 1e6)
cpu = (float(sys.argv[4]) - float(sys.argv[3])) * 1e6 / max(requests, 1)
print(f'floor: {sys.argv[1]} at concurrency 8: {rate:.0f}/s, p50 {int(fields["p50_us"])/1000:.2f} ms, p99 {int(fields["p99_us"])/1000:.2f} ms, {cpu:.0f} µs of server CPU a request')
PY
    }
    floor_point "Signet GET /healthz" "${full_url%/v1/certificates}" "$full_pid"
    local floor_port floor_pid
    floor_port=$(free_port)
    "$bin/signet-bench" floor "$floor_port" >"$work/floor.log" 2>&1 &
    floor_pid=$!; pids+=("$floor_pid")
    wait_http "http://127.0.0.1:$floor_port/healthz"
    floor_point "bare Hummingbird 2 GET" "http://127.0.0.1:$floor_port" "$floor_pid"
    kill "$floor_pid"
    printf 'peak RSS: cfssl %s MB, Signet %s MB (full), %s MB (normal)\n' "$(peak_rss_mb "$cfssl_pid")" \
        "$(peak_rss_mb "$full_pid")" "$(peak_rss_mb "$normal_pid")"
    printf 'rows recorded: cfssl %s, Signet %s + %s (every 201 is a committed row)\n' \
        "$(sqlite3 "$work/cfssl.db" 'select count(*) from certificates')" "$(signet_rows signet)" "$(signet_rows signet-normal)"
    kill "$cfssl_pid" "$full_pid" "$normal_pid"
}

bench_ceiling_and_ledger() {
    echo
    "$bin/signet-bench" ceiling 5 | sed 's/^CEILING /in-process ceiling (parse + verify CSR, build + sign, no HTTP, no SQLite): /'

    echo
    echo "ledger queries with $rows rows (first run fills the file; SIGNET_BENCH_ROWS to change):"
    "$bin/signet-bench" ledger "$rows" "${SIGNET_BENCH_LEDGER:-$work/ledger-1m.sqlite}" | sed 's/^QUERY /  /; s/^LEDGER /  /'
}

# The CA key in Key Vault: the double (HTTPS + Entra ID) holds every sign call for 20 ms and Signet is told the vault
# allows 200 signs/s (SIGNET_BENCH_VAULT_LATENCY_MS, SIGNET_BENCH_VAULT_LIMIT): throughput should sit at the limit,
# far above the 50/s of waiting for each answer, with the wait for a turn bounded by the queue.
bench_vault() {
    local latency=${SIGNET_BENCH_VAULT_LATENCY_MS:-20} limit=${SIGNET_BENCH_VAULT_LIMIT:-200} tenant=00000000-0000-0000-0000-000000000001
    local vault="$work/vault"
    mkdir -p "$vault"
    python3 Tests/KeyVaultDouble/keyvault_double.py --dir "$vault" --tenant "$tenant" --client-secret bench >"$vault/out" 2>"$vault/err" &
    pids+=($!)
    for _ in $(seq 1 100); do grep -q READY "$vault/out" 2>/dev/null && break; sleep 0.1; done
    local vault_url
    vault_url="https://127.0.0.1:$(awk '/READY/ {print $2}' "$vault/out")"
    local azure=(AZURE_TENANT_ID="$tenant" AZURE_CLIENT_ID=signet AZURE_CLIENT_SECRET=bench AZURE_AUTHORITY_HOST="$vault_url"
                 SIGNET_KEYVAULT_CA_FILE="$vault/ca.crt")
    vault_admin() { curl -sf --cacert "$vault/ca.crt" -X POST --data-binary "$2" "$vault_url/_admin/$1" >/dev/null; }
    vault_stat() { curl -sf --cacert "$vault/ca.crt" "$vault_url/_admin/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

    env "${azure[@]}" "$bin/signet" ca init --dir "$work/vault-ca" --org Bench --key-vault "$vault_url" --key-name bench --create-key ec-p256 >/dev/null
    vault_admin faults "{\"latency_ms\": $latency}"
    start_signet vault "${azure[@]}" SIGNET_CA_DIR="$work/vault-ca" SIGNET_KEYVAULT_URL="$vault_url" SIGNET_KEYVAULT_KEY=bench \
        SIGNET_KEYVAULT_MAX_SIGNS_PER_SECOND="$limit"
    run_point vault "$signet_url" "$work/signet-bodies.txt" "$token" 8 >/dev/null

    printf '\nCA key in Key Vault (double): %s ms a sign call, limit %s signs/s; waiting for each answer would give %s/s\n' \
        "$latency" "$limit" "$((1000 / latency))"
    printf '%-6s | %-34s | %s\n' "conc." "issued/s   p50 ms   p99 ms  errors" "vault: signs/s in its busiest second, most in flight"
    for concurrency in 8 64; do
        vault_admin stats/reset '{}'
        read -r rate p50 p99 errors < <(run_point vault "$signet_url" "$work/signet-bodies.txt" "$token" "$concurrency")
        printf '%-6s | %8s %8s %8s %7s | %s, %s\n' "$concurrency" "$rate" "$p50" "$p99" "$errors" \
            "$(vault_stat sign_per_second_max)" "$(vault_stat sign_in_flight_max)"
    done
    printf 'peak RSS: Signet %s MB\n' "$(peak_rss_mb "$signet_pid")"
    kill "$signet_pid"
}

# SoftHSM2 against the key file: a token of its own, the key pair generated on it.
bench_hsm() {
    local hsm="$work/softhsm" module=/usr/lib/softhsm/libsofthsm2.so
    mkdir -p "$hsm/tokens"
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$hsm" >"$hsm/softhsm2.conf"
    export SOFTHSM2_CONF="$hsm/softhsm2.conf" BENCH_PIN=1234
    softhsm2-util --init-token --free --label bench --pin "$BENCH_PIN" --so-pin 12345678 >/dev/null
    pkcs11-tool --module "$module" --token-label bench --login --pin "$BENCH_PIN" --keypairgen --key-type EC:prime256v1 --label ca --id 01 >/dev/null 2>&1
    "$bin/signet" ca init --dir "$work/hsm-ca" --org Bench --pkcs11-module "$module" --token-label bench --key-label ca --pin-env BENCH_PIN >/dev/null
    start_signet hsm SIGNET_CA_DIR="$work/hsm-ca" SIGNET_PKCS11_MODULE="$module" SIGNET_PKCS11_TOKEN=bench SIGNET_PKCS11_KEY_LABEL=ca \
        SIGNET_PKCS11_PIN_ENV=BENCH_PIN
    local hsm_pid=$signet_pid hsm_url=$signet_url hsm_token=$token
    start_signet file SIGNET_CA_DIR="$work/ca"
    run_point hsm "$hsm_url" "$work/signet-bodies.txt" "$hsm_token" 8 >/dev/null
    run_point file "$signet_url" "$work/signet-bodies.txt" "$token" 8 >/dev/null

    printf '\n%-6s | %-34s | %-34s | %s\n' "conc." "key file (P-256)" "SoftHSM2 2.6 token (P-256, 4 sessions)" "token/file"
    printf '%-6s | %-34s | %-34s | %s\n' "" "issued/s   p50 ms   p99 ms  errors" "issued/s   p50 ms   p99 ms  errors" "issued/s"
    for concurrency in 1 8 64; do
        read -r f_rate f_p50 f_p99 f_err < <(run_point file "$signet_url" "$work/signet-bodies.txt" "$token" "$concurrency")
        read -r h_rate h_p50 h_p99 h_err < <(run_point hsm "$hsm_url" "$work/signet-bodies.txt" "$hsm_token" "$concurrency")
        ratio=$(python3 -c "print(f'{$h_rate / max($f_rate, 1):.2f}x')")
        printf '%-6s | %8s %8s %8s %7s | %8s %8s %8s %7s | %s\n' "$concurrency" "$f_rate" "$f_p50" "$f_p99" "$f_err" "$h_rate" "$h_p50" "$h_p99" "$h_err" "$ratio"
    done
    printf 'peak RSS: key file %s MB, SoftHSM2 %s MB\n' "$(peak_rss_mb "$signet_pid")" "$(peak_rss_mb "$hsm_pid")"
    kill "$signet_pid" "$hsm_pid"
}

# ACME: the whole order flow (newOrder, authorization, http-01 challenge, finalize, download) per second, by the
# same client loop (signet-bench acme) against Pebble (Debian 2.4, in memory, PEBBLE_VA_ALWAYS_VALID=1,
# PEBBLE_VA_NOSLEEP=1) and against Signet (HTTPS, durable ledger: synchronous=FULL, an alwaysValid directory), one
# after the other at each concurrency. Both serve HTTPS with a P-256 certificate; each client an ES256 account.
bench_acme() {
    bash scripts/ensure-packages.sh pebble wrk
    local pebble_port pebble_management signet_port p8_rate=0
    pebble_port=$(free_port); pebble_management=$(free_port); signet_port=$(free_port)
    mkdir -p "$work/pebble"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/pebble/key.pem" -out "$work/pebble/cert.pem" \
        -days 2 -subj /CN=pebble -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
    cat > "$work/pebble/config.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$pebble_port", "managementListenAddress": "127.0.0.1:$pebble_management",
 "certificate": "$work/pebble/cert.pem", "privateKey": "$work/pebble/key.pem", "httpPort": 5002, "tlsPort": 5001,
 "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
    # Pebble 2.4 sometimes stops answering POSTs for good under concurrent clients (its handlers block on a lock;
    # GET /dir still answers), so every point gets a fresh Pebble, and a point it wedges in shows as errors.
    local pebble_pid=0
    start_pebble() {
        if [ "$pebble_pid" != 0 ]; then kill "$pebble_pid" 2>/dev/null || true; wait "$pebble_pid" 2>/dev/null || true; fi
        PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
            pebble -config "$work/pebble/config.json" >>"$work/pebble.log" 2>&1 &
        pebble_pid=$!; pids+=("$pebble_pid")
        for _ in $(seq 1 100); do curl -sf --cacert "$work/pebble/cert.pem" -o /dev/null "https://127.0.0.1:$pebble_port/dir" && break; sleep 0.1; done
    }

    cat > "$work/acme.yaml" <<YAML
acme:
  directories:
    - name: bench
      allow: ["**.bench.test"]
      alwaysValid: true
YAML
    env SIGNET_DATA_DIR="$work/acme" SIGNET_LISTEN="127.0.0.1:$signet_port" SIGNET_DURABILITY=full SIGNET_LIMIT_ISSUANCES_PER_SECOND=0 \
        SIGNET_CA_DIR="$work/ca" "$bin/signet" serve --config "$work/acme.yaml" --log-level warning >"$work/acme.log" 2>&1 &
    local signet_acme_pid=$!; pids+=("$signet_acme_pid")
    for _ in $(seq 1 100); do curl -sf --cacert "$work/ca/root.crt" -o /dev/null "https://127.0.0.1:$signet_port/healthz" && break; sleep 0.1; done
    local pebble_dir="https://127.0.0.1:$pebble_port/dir" signet_dir="https://127.0.0.1:$signet_port/acme/bench/directory"

    acme_point() { # directory ca clients label -> "orders/s p50 p99 requests/order errors"
        "$bin/signet-bench" acme "$1" "$2" "$3" "$seconds" "$4" 2>>"$work/acme-errors.log" | grep '^RESULT' | python3 -c '
import sys
f = dict(item.split("=") for item in sys.stdin.read().split()[1:])
orders = int(f["orders"])
print("{:.0f} {} {} {:.1f} {}".format(orders / float(f["seconds"]), f["p50_ms"], f["p99_ms"], int(f["requests"]) / max(orders, 1), f["errors"]))'
    }
    acme_point "$signet_dir" "$work/ca/root.crt" 8 warm-s >/dev/null

    printf '\nACME order flow (newOrder, authz, challenge, finalize, download), same client loop, %s s a point\n' "$seconds"
    printf '%-7s | %-44s | %-44s | %s\n' "clients" "Pebble 2.4 (in memory)" "Signet (SQLite WAL, sync=FULL)" "Signet/Pebble"
    printf '%-7s | %-44s | %-44s | %s\n' "" "orders/s  p50 ms  p99 ms  req/order  CPU ms/order" "orders/s  p50 ms  p99 ms  req/order  CPU ms/order" "orders/s"
    for clients in 1 8 64; do
        local before_p before_s peak_p
        start_pebble
        before_p=$(cpu_seconds "$pebble_pid")
        read -r p_rate p_p50 p_p99 p_req p_err < <(acme_point "$pebble_dir" "$work/pebble/cert.pem" "$clients" "p$clients")
        p_cpu=$(python3 -c "print(f'{($(cpu_seconds "$pebble_pid") - $before_p) * 1000 / max($p_rate * $seconds, 1):.2f}')")
        peak_p=$(peak_rss_mb "$pebble_pid")
        before_s=$(cpu_seconds "$signet_acme_pid")
        read -r s_rate s_p50 s_p99 s_req s_err < <(acme_point "$signet_dir" "$work/ca/root.crt" "$clients" "s$clients")
        s_cpu=$(python3 -c "print(f'{($(cpu_seconds "$signet_acme_pid") - $before_s) * 1000 / max($s_rate * $seconds, 1):.2f}')")
        ratio=$(python3 -c "print(f'{$s_rate / max($p_rate, 1):.2f}x')")
        [ "$clients" = 8 ] && p8_rate=$p_rate
        printf '%-7s | %8s %7s %7s %9s %12s | %8s %7s %7s %9s %12s | %s   (errors: Pebble %s, Signet %s)\n' "$clients" \
            "$p_rate" "$p_p50" "$p_p99" "$p_req" "$p_cpu" "$s_rate" "$s_p50" "$s_p99" "$s_req" "$s_cpu" "$ratio" "$p_err" "$s_err"
    done
    # The floor: what one HTTPS request costs this server with nothing behind it (GET /healthz, wrk at 8 connections,
    # CPU from procfs), times the requests an order takes; and what the target would need.
    local before_h healthz_rate healthz_us
    before_h=$(cpu_seconds "$signet_acme_pid")
    healthz_rate=$(wrk -t 2 -c 8 -d "${seconds}s" "https://127.0.0.1:$signet_port/healthz" | awk '/Requests\/sec/ {print $2}')
    healthz_us=$(python3 -c "print(f'{($(cpu_seconds "$signet_acme_pid") - $before_h) * 1e6 / max($healthz_rate * $seconds, 1):.0f}')")
    python3 - "$healthz_rate" "$healthz_us" "$s_req" "$p8_rate" "$(nproc)" <<'PY'
import sys
rate, us, requests, pebble8, cores = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
floor_ms = us * requests / 1000
target = 10 * pebble8
print(f"floor: an HTTPS GET /healthz costs Signet {us:.0f} µs of CPU ({rate:.0f}/s at 8 connections); {requests:.1f} requests an order "
      f"make {floor_ms:.2f} ms of CPU an order before any ACME work")
print(f"10x Pebble at 8 clients = {target:.0f} orders/s = {target * requests:.0f} HTTPS requests/s: "
      f"{target * floor_ms / 1000:.1f} cores for the bare requests alone, on a machine with {cores}, which the client shares")
PY
    printf 'certificates in the ledger: %s (each committed before its order turned valid)\n' \
        "$(sqlite3 "$work/acme/ledger.sqlite" "select count(*) from certificates where requester like 'acme:bench/%'")"
    printf 'peak RSS: Pebble %s MB (at 64 clients), Signet %s MB\n' "$peak_p" "$(peak_rss_mb "$signet_acme_pid")"
    kill "$pebble_pid" "$signet_acme_pid"
}

# OCSP answers/s over plain HTTP (as OCSP is served), SHA-1 CertIDs as RFC 5019 clients send them. Signet's cached
# answers by GET (100 certificates round robin) and by POST (one request), Signet signing every answer (a nonce in
# each request), and the peer: cfssl's `ocspserve`, which serves a table of pre-signed responses (made here with the
# intermediate's key), by POST (Debian's cfssl 1.2 refuses GET paths). OpenSSL's `openssl ocsp -index` responder is
# no peer for load: it wedges for good under 8 concurrent wrk connections. The floor: Signet's GET /healthz.
bench_ocsp() {
    start_signet ocsp SIGNET_CA_DIR="$work/ca"
    local base=${signet_url%/v1/certificates} peer_port
    mkdir -p "$work/ocsp"
    python3 bench/ocsp_prepare.py "$base" "$token" "$work/signet-bodies.txt" 100 "$work/ca/intermediate.crt" "$work/ca/intermediate.key" "$work/ocsp"
    peer_port=$(free_port)
    cfssl ocspserve -port "$peer_port" -responses "$work/ocsp/cfssl-responses.txt" -loglevel 5 >"$work/ocsp/peer.log" 2>&1 &
    local peer_pid=$!; pids+=("$peer_pid")
    sleep 1
    summary() {
        python3 -c '
import sys
f = dict(item.split("=") for item in sys.stdin.read().split()[1:])
rate = int(f["requests"]) / (int(f["duration_us"]) / 1e6)
print("{:.0f} {:.2f} {:.2f} {}".format(rate, int(f["p50_us"]) / 1000, int(f["p99_us"]) / 1000, int(f["socket_errors"]) + int(f["non2xx"])))'
    }
    get_point() { # base paths concurrency -> "rate p50_ms p99_ms errors"
        wrk -t "$(( $3 < 2 ? 1 : 2 ))" -c "$3" -d "${seconds}s" --timeout 5s -s bench/get.lua "$1" -- "$2" | grep '^RESULT' | summary
    }
    post_point() { # url body concurrency -> "rate p50_ms p99_ms errors"
        wrk -t "$(( $3 < 2 ? 1 : 2 ))" -c "$3" -d "${seconds}s" --timeout 5s -s bench/post.lua "$1" -- "$2" application/ocsp-request | grep '^RESULT' | summary
    }
    echo "/healthz" > "$work/ocsp/healthz.txt"
    get_point "$base" "$work/ocsp/signet-cached.txt" 8 >/dev/null  # every answer signed once and cached
    printf '\nOCSP answers/s, %s s a point: rate, p50 and p99 ms, errors\n' "$seconds"
    printf '%-7s | %-27s | %-27s | %-27s | %-27s | %-27s | %s\n' "clients" "Signet GET, cached" "Signet POST, cached" "Signet GET, signed (nonce)" \
        "cfssl ocspserve POST" "floor: Signet GET /healthz" "Signet CPU us/answer (GET, cached)"
    for clients in 1 8 64; do
        local before after
        before=$(cpu_seconds "$signet_pid")
        read -r g_rate g_p50 g_p99 g_err < <(get_point "$base" "$work/ocsp/signet-cached.txt" "$clients")
        after=$(cpu_seconds "$signet_pid")
        read -r p_rate p_p50 p_p99 p_err < <(post_point "$base/ocsp" "$work/ocsp/post.der" "$clients")
        read -r n_rate n_p50 n_p99 n_err < <(get_point "$base" "$work/ocsp/signet-nonce.txt" "$clients")
        read -r c_rate c_p50 c_p99 c_err < <(post_point "http://127.0.0.1:$peer_port/" "$work/ocsp/post.der" "$clients")
        read -r h_rate h_p50 h_p99 h_err < <(get_point "$base" "$work/ocsp/healthz.txt" "$clients")
        printf '%-7s | %6s %5s %6s %6s | %6s %5s %6s %6s | %6s %5s %6s %6s | %6s %5s %6s %6s | %6s %5s %6s %6s | %s\n' "$clients" \
            "$g_rate" "$g_p50" "$g_p99" "$g_err" "$p_rate" "$p_p50" "$p_p99" "$p_err" "$n_rate" "$n_p50" "$n_p99" "$n_err" \
            "$c_rate" "$c_p50" "$c_p99" "$c_err" "$h_rate" "$h_p50" "$h_p99" "$h_err" \
            "$(python3 -c "print(f'{($after - $before) * 1e6 / max($g_rate * $seconds, 1):.0f}')")"
    done
    printf 'peak RSS: Signet %s MB, cfssl ocspserve %s MB\n' "$(peak_rss_mb "$signet_pid")" "$(peak_rss_mb "$peer_pid")"
    kill "$peer_pid" "$signet_pid" 2>/dev/null || true
}

# Several replicas on PostgreSQL against one on SQLite: the same CSRs through the same haproxy hop (round robin over
# the replicas of each point), all replicas running throughout; then the 1,000,000-row ledger queries on PostgreSQL.
# On this machine the replicas, PostgreSQL, haproxy and wrk share two cores: the table shows the cost per issuance
# and that every replica count stays correct under load, not scaling.
bench_replicas() {
    bash scripts/ensure-packages.sh postgresql haproxy
    local version pg_bin pg_dir pg_port as_owner=() database ledger_key
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_bin=/usr/lib/postgresql/$version/bin
    pg_dir=$(mktemp -d /tmp/signet-bench-pg.XXXXXX)
    pg_port=$(free_port)
    # initdb and postgres refuse root: as root, the cluster belongs to Debian's postgres user.
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$pg_dir"; as_owner=(runuser -u postgres --); fi
    "${as_owner[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U signet -A trust -E UTF8 >/dev/null
    # PostgreSQL's defaults (fsync on, synchronous_commit on), more connections for three replicas' pools.
    "${as_owner[@]}" "$pg_bin/postgres" -D "$pg_dir/data" -p "$pg_port" -k "$pg_dir" -c listen_addresses=127.0.0.1 \
        -c max_connections=200 -c shared_buffers=256MB >"$work/postgres.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break; sleep 0.2; done
    "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U signet -d postgres -c "CREATE DATABASE signet" -c "CREATE DATABASE ledger1m"
    database="postgres://signet@127.0.0.1:$pg_port/signet?sslmode=disable&pool_max_conns=32"
    ledger_key=$(openssl rand -base64 32)

    start_signet sqlite SIGNET_CA_DIR="$work/ca"
    local sqlite_port=${signet_url#http://127.0.0.1:}; sqlite_port=${sqlite_port%%/*}
    local sqlite_token=$token sqlite_pid=$signet_pid
    local replica_ports=() replica_pids=()
    for replica in 1 2 3; do
        start_signet "pg-$replica" SIGNET_CA_DIR="$work/ca" SIGNET_DATABASE="$database" SIGNET_LEDGER_KEY="$ledger_key"
        local port=${signet_url#http://127.0.0.1:}; replica_ports+=("${port%%/*}"); replica_pids+=("$signet_pid")
    done
    local pg_token
    pg_token=$("$bin/signet" token create --name bench-pg --allow '*.example.com' --database "$database")

    # One haproxy, one frontend per point: sqlite (1 replica), pg1, pg2, pg3 (the first N replicas).
    local front=() cfg="$work/haproxy.cfg"
    printf 'global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n' >"$cfg"
    for name in sqlite pg1 pg2 pg3; do
        local port; port=$(free_port); front+=("$port")
        printf 'frontend %s\n  bind 127.0.0.1:%s\n  default_backend %s\nbackend %s\n  balance roundrobin\n' "$name" "$port" "$name" "$name" >>"$cfg"
        case $name in
            sqlite) printf '  server s0 127.0.0.1:%s\n' "$sqlite_port" >>"$cfg" ;;
            *) for index in $(seq 0 $(( ${name#pg} - 1 ))); do printf '  server r%s 127.0.0.1:%s\n' "$index" "${replica_ports[$index]}" >>"$cfg"; done ;;
        esac
    done
    haproxy -f "$cfg" -db >"$work/haproxy.log" 2>&1 &
    local haproxy_pid=$!; pids+=("$haproxy_pid")
    for port in "${front[@]}"; do wait_http "http://127.0.0.1:$port/healthz"; done
    local urls=("http://127.0.0.1:${front[0]}/v1/certificates" "http://127.0.0.1:${front[1]}/v1/certificates"
                "http://127.0.0.1:${front[2]}/v1/certificates" "http://127.0.0.1:${front[3]}/v1/certificates")
    local tokens=("$sqlite_token" "$pg_token" "$pg_token" "$pg_token")
    for index in 0 1 2 3; do run_point warm "${urls[$index]}" "$work/signet-bodies.txt" "${tokens[$index]}" 8 >/dev/null; done

    printf '\nissuance through haproxy, %s s a point: issued/s, p50 and p99 ms, errors\n' "$seconds"
    printf '%-6s | %-31s | %-31s | %-31s | %-31s\n' "conc." "SQLite, 1 replica" "PostgreSQL, 1 replica" "PostgreSQL, 2 replicas" "PostgreSQL, 3 replicas"
    for concurrency in 8 64; do
        local cells=()
        for index in 0 1 2 3; do
            read -r rate p50 p99 errors < <(run_point point "${urls[$index]}" "$work/signet-bodies.txt" "${tokens[$index]}" "$concurrency")
            cells+=("$(printf '%6s %7s %7s %6s' "$rate" "$p50" "$p99" "$errors")")
        done
        printf '%-6s | %-31s | %-31s | %-31s | %-31s\n' "$concurrency" "${cells[@]}"
    done
    echo "$(printf '/healthz\n')" >"$work/healthz-path.txt"
    read -r h_rate h_p50 h_p99 h_err < <(wrk -t 2 -c 8 -d "${seconds}s" --timeout 5s -s bench/get.lua "http://127.0.0.1:${front[1]}" -- "$work/healthz-path.txt" | grep '^RESULT' | python3 -c '
import sys
fields = dict(item.split("=") for item in sys.stdin.read().split()[1:])
rate = int(fields["requests"]) / (int(fields["duration_us"]) / 1e6)
print("{:.0f} {:.2f} {:.2f} 0".format(rate, int(fields["p50_us"]) / 1000, int(fields["p99_us"]) / 1000))')
    printf 'floor: GET /healthz through haproxy to one replica at concurrency 8: %s/s, p50 %s ms, p99 %s ms\n' "$h_rate" "$h_p50" "$h_p99"
    local recorded answered_rows
    recorded=$("$pg_bin/psql" -At -h 127.0.0.1 -p "$pg_port" -U signet -d signet -c "SELECT count(*), count(DISTINCT serial) FROM certificates WHERE requester = 'token:bench-pg'")
    printf 'PostgreSQL ledger: %s certificates recorded by the replicas, serials distinct: %s\n' "${recorded%%|*}" "${recorded##*|}"
    printf 'peak RSS: SQLite replica %s MB; PostgreSQL replicas %s, %s, %s MB\n' "$(peak_rss_mb "$sqlite_pid")" \
        "$(peak_rss_mb "${replica_pids[0]}")" "$(peak_rss_mb "${replica_pids[1]}")" "$(peak_rss_mb "${replica_pids[2]}")"
    kill "$haproxy_pid" "$sqlite_pid" "${replica_pids[@]}" 2>/dev/null || true

    # 1,000,000 certificates on PostgreSQL, shaped as the SQLite benchmark's (a year of issuance, 90-day lifetimes,
    # 200 requesters, 1000 domains), written by SQL (the schema by Signet's own migrations), then the same queries.
    echo
    echo "PostgreSQL ledger queries with $rows rows:"
    local ledger_url="postgres://signet@127.0.0.1:$pg_port/ledger1m?sslmode=disable"
    "$bin/signet" token list --database "$ledger_url" >/dev/null   # migrates the empty database
    local started=$SECONDS
    "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U signet -d ledger1m <<SQL
INSERT INTO certificates (serial, issuer_key_id, subject, dns_names, ip_addresses, uris, public_key_sha256, csr_sha256,
    profile, not_before, not_after, requester, issued_at, der)
SELECT lpad(to_hex(i), 40, '0'), 'bench', 'CN=host-' || i || '.team-' || (i % 1000) || '.example.com',
    ARRAY['host-' || i || '.team-' || (i % 1000) || '.example.com'], '{}', '{}', 'pk', 'csr', 'server',
    t, t + 90 * 86400, 'token:team-' || (i % 200), t * 1000, decode(repeat('30', 600), 'hex')
FROM (SELECT i, extract(epoch FROM now())::bigint - 365 * 86400 + i * 365 * 86400 / $rows AS t
      FROM generate_series(0::bigint, $rows - 1) AS i) AS s;
INSERT INTO certificate_names (certificate_id, name) SELECT id, dns_names[1] FROM certificates;
INSERT INTO audit_events (at_ms, actor, action, outcome, subject)
    SELECT issued_at, requester, 'certificate.issue', 'success', serial FROM certificates;
VACUUM ANALYZE;
SQL
    printf '  filled %s rows in %s s\n' "$rows" "$(( SECONDS - started ))"
    "$bin/signet-bench" ledger "$rows" "$ledger_url" | sed 's/^QUERY /  /'
}

case "$mode" in
    cfssl) bench_cfssl; bench_ceiling_and_ledger ;;
    signers) bench_vault; bench_hsm ;;
    vault) bench_vault ;;
    hsm) bench_hsm ;;
    acme) bench_acme ;;
    ocsp) bench_ocsp ;;
    replicas) bench_replicas ;;
    all) bench_cfssl; bench_ceiling_and_ledger; bench_vault; bench_hsm; bench_acme; bench_ocsp; bench_replicas ;;
    *) echo "mode must be all, cfssl, signers, vault, hsm, acme, ocsp or replicas" >&2; exit 2 ;;
esac
