#!/bin/sh
# Measures mailcloak's mutual-TLS listener against baseline-responder --tls
# (a minimal mutual-TLS responder that makes no decision) with the same load
# generator in the same run:
#   - policy requests over persistent TLS connections, with latency percentiles;
#   - a new connection per request: full handshakes per second, then resumed
#     handshakes per second (each connection slot offers its last session).
# Every reply is checked against bench/policy-rcpt.*-expect.txt. Certificates
# come from certs-example/make-certs.sh in a temporary folder; the client is
# node mx1, which the listener's access rule grants policy and every map.
# Settings through the environment: BENCH_CONNECTIONS (64), BENCH_SECONDS
# (10), BENCH_SERVER_THREADS (1; "1 2" runs both), BENCH_CLIENT_THREADS (1),
# BENCH_HANDSHAKE_CONNECTIONS (16, connection slots in the handshake runs),
# BENCH_SCRATCH_PATH (a SwiftPM scratch path; default .build), BENCH_PERF_DIR
# (when set, perf records mailcloak during its persistent run and writes
# perf-THREADS.txt there).
set -eu

cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && PATH="/opt/swift/usr/bin:$PATH"
export PATH
. scripts/lib/demo-env.sh

connections=${BENCH_CONNECTIONS:-64}
seconds=${BENCH_SECONDS:-10}
server_threads=${BENCH_SERVER_THREADS:-1}
client_threads=${BENCH_CLIENT_THREADS:-1}
handshake_connections=${BENCH_HANDSHAKE_CONNECTIONS:-16}
perf_dir=${BENCH_PERF_DIR:-}
pg_port=15436
keycloak_port=18083
mailcloak_port=17032
baseline_port=17031

scratch=""
[ -n "${BENCH_SCRATCH_PATH:-}" ] && scratch="--scratch-path $BENCH_SCRATCH_PATH"
scripts/install-deps.sh
for product in mailcloak mailcloakctl mailcloak-bench baseline-responder; do
    # shellcheck disable=SC2086
    if ! output=$(swift build -c release $scratch --product "$product" 2>&1); then
        printf '%s\n' "$output" | grep -E 'error' | head -20 >&2
        echo "bench-tls.sh: building $product failed" >&2
        exit 1
    fi
done
# shellcheck disable=SC2086
bin=$(swift build -c release $scratch --show-bin-path)

demo_dir=$(mktemp -d /tmp/mailcloak-bench-tls.XXXXXX)
chmod 0755 "$demo_dir"
certs="$demo_dir/certs"

server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    demo_stop_keycloak
    demo_stop_postgres
    rm -rf "$demo_dir"
}
trap cleanup EXIT INT TERM

certs-example/make-certs.sh "$certs" mailcloak.example.internal mx1 >/dev/null
demo_start_postgres "$pg_port"
demo_start_keycloak "$keycloak_port"
demo_seed "$bin/mailcloakctl" >/dev/null

# Writes a configuration with one mutual-TLS listener on 127.0.0.1:$1 and $2
# reactor threads to $3. The access rule grants node mx1 policy and every map.
write_tls_config() {
    cat >"$3" <<YAML
listeners:
  - name: bench-tls
    address: "tcp:127.0.0.1:$1"
    tls:
      certificate: $certs/server.crt
      key: $certs/server.key
      client_ca: $certs/ca.crt
    acl:
      - name: mx1
        identities: ["uri:spiffe://mail.example/node/mx1"]
        services: [policy, "socketmap:*"]
server:
  reactor_threads: $2
database:
  url: "$database_url"
identity:
  provider: keycloak
  keycloak:
    base_url: "http://127.0.0.1:$keycloak_port"
    realm: mail
    client_id: mailcloak
    client_secret: demo-secret
log:
  level: warning
YAML
}

wait_port() {
    tries=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -le 100 ] || { echo "nothing listens on port $1" >&2; exit 1; }
        sleep 0.1
    done
}

# Runs the load generator over mutual TLS and keeps its output in
# $demo_dir/$1.out: $1 result name, $2 port, $3 expect file, then more options.
load() {
    name=$1
    port=$2
    expect=$3
    shift 3
    status=0
    "$bin/mailcloak-bench" --target "tcp:127.0.0.1:$port" --protocol policy \
        --requests-file bench/policy-rcpt.txt --expect-file "$expect" \
        --duration "$seconds" --warmup 1 --threads "$client_threads" \
        --tls --cert "$certs/client-mx1.crt" --key "$certs/client-mx1.key" --ca "$certs/ca.crt" \
        --server-name mailcloak.example.internal "$@" >"$demo_dir/$name.out" || status=$?
    cat "$demo_dir/$name.out"
    return "$status"
}

# Runs the three measurements against one server: $1 server name, $2 port, $3 expect file, $4 threads.
measure() {
    echo "== $1, $4 thread(s), policy, $connections persistent connections"
    if [ -n "$perf_dir" ] && [ "$1" = mailcloak ]; then
        (sleep 2 && perf record -g -p "$server_pid" -o "$demo_dir/perf.data" -- sleep $((seconds - 2)) \
            >/dev/null 2>&1) &
        perf_job=$!
    fi
    load "$1-$4-persistent" "$2" "$3" --connections "$connections"
    if [ -n "${perf_job:-}" ]; then
        wait "$perf_job" || true
        perf_job=""
        mkdir -p "$perf_dir"
        perf report -i "$demo_dir/perf.data" --no-children --percent-limit 0.5 --stdio \
            >"$perf_dir/perf-$4.txt" 2>/dev/null || true
        echo "perf report written to $perf_dir/perf-$4.txt"
    fi
    echo "== $1, $4 thread(s), policy, new connection per request, full handshakes"
    load "$1-$4-full" "$2" "$3" --connections "$handshake_connections" --new-connection-per-request
    echo "== $1, $4 thread(s), policy, new connection per request, resumed handshakes"
    load "$1-$4-resumed" "$2" "$3" --connections "$handshake_connections" --new-connection-per-request --resume
}

# Prints a figure of one result: $1 result name, $2 "requests" or "handshakes".
figure() {
    if [ "$2" = requests ]; then
        awk '/^throughput/ { print $2 }' "$demo_dir/$1.out"
    else
        awk '/TLS handshakes/ { for (i = 1; i <= NF; i++) if ($i == "handshakes") { gsub(/[(\/s)]/, "", $(i + 2)); print $(i + 2) } }' \
            "$demo_dir/$1.out"
    fi
}

echo "machine: $(nproc) cores, $(uname -r), $(openssl version | cut -d' ' -f1-2), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load: $seconds s after 1 s warmup, $client_threads client thread(s), mutual TLS as node mx1"
for threads in $server_threads; do
    "$bin/baseline-responder" --tls "$certs/server.crt" "$certs/server.key" "$certs/ca.crt" \
        127.0.0.1 "$baseline_port" "$threads" 2>/dev/null &
    server_pid=$!
    wait_port "$baseline_port"
    measure baseline-responder "$baseline_port" bench/policy-rcpt.baseline-expect.txt "$threads"
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true

    write_tls_config "$mailcloak_port" "$threads" "$demo_dir/mailcloak.yaml"
    "$bin/mailcloak" serve --config "$demo_dir/mailcloak.yaml" &
    server_pid=$!
    wait_port "$mailcloak_port"
    measure mailcloak "$mailcloak_port" bench/policy-rcpt.mailcloak-expect.txt "$threads"
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
done

echo "== summary (mailcloak as a share of baseline-responder --tls)"
printf '%-8s %-28s %12s %12s %7s\n' threads measure baseline mailcloak share
for threads in $server_threads; do
    for kind in persistent:requests full:handshakes resumed:handshakes; do
        run=${kind%%:*}
        unit=${kind#*:}
        base=$(figure "baseline-responder-$threads-$run" "$unit")
        ours=$(figure "mailcloak-$threads-$run" "$unit")
        share=$(awk -v a="$ours" -v b="$base" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "-" }')
        printf '%-8s %-28s %12s %12s %7s\n' "$threads" "$run $unit/s" "$base" "$ours" "$share"
    done
done
