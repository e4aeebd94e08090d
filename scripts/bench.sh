#!/bin/sh
# Measures mailcloak against the no-decision baseline responder with the same
# load generator in the same run: policy and socketmap requests over
# persistent plain-TCP connections with warm caches. Prints both results.
# Settings through the environment: BENCH_CONNECTIONS (64), BENCH_SECONDS (10),
# BENCH_SERVER_THREADS (1 and 2 are both run when unset), BENCH_CLIENT_THREADS (1).
set -eu

cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && PATH="/opt/swift/usr/bin:$PATH"
export PATH
. scripts/lib/demo-env.sh

connections=${BENCH_CONNECTIONS:-64}
seconds=${BENCH_SECONDS:-10}
server_threads=${BENCH_SERVER_THREADS:-"1 2"}
client_threads=${BENCH_CLIENT_THREADS:-1}
pg_port=15434
keycloak_port=18081
mailcloak_port=17028
baseline_port=17027
demo_dir=$(mktemp -d /tmp/mailcloak-bench.XXXXXX)
chmod 0755 "$demo_dir"

scripts/install-deps.sh
for product in mailcloak mailcloakctl mailcloak-bench baseline-responder; do
    swift build -c release --product "$product" >/dev/null
done
bin=$(swift build -c release --show-bin-path)

server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    demo_stop_keycloak
    demo_stop_postgres
    rm -rf "$demo_dir"
}
trap cleanup EXIT INT TERM

demo_start_postgres "$pg_port"
demo_start_keycloak "$keycloak_port"
demo_seed "$bin/mailcloakctl" >/dev/null

wait_port() {
    tries=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -le 100 ] || { echo "nothing listens on port $1" >&2; exit 1; }
        sleep 0.1
    done
}

# Runs the load generator: $1 port, $2 protocol, $3 requests file, $4 expect file or "".
load() {
    expect=""
    [ -n "$4" ] && expect="--expect-file $4"
    # shellcheck disable=SC2086
    "$bin/mailcloak-bench" --target "tcp:127.0.0.1:$1" --protocol "$2" --requests-file "$3" $expect \
        --connections "$connections" --duration "$seconds" --warmup 1 --threads "$client_threads"
}

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load: $connections persistent connections, $seconds s after 1 s warmup, $client_threads client thread(s)"
for threads in $server_threads; do
    "$bin/baseline-responder" 127.0.0.1 "$baseline_port" "$threads" &
    server_pid=$!
    wait_port "$baseline_port"
    echo "== baseline-responder, $threads thread(s), policy"
    load "$baseline_port" policy bench/policy-rcpt.txt bench/policy-rcpt.baseline-expect.txt
    echo "== baseline-responder, $threads thread(s), socketmap"
    load "$baseline_port" socketmap bench/socketmap.txt bench/socketmap.baseline-expect.txt
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true

    demo_write_config "$mailcloak_port" "$threads" "$demo_dir/mailcloak.yaml"
    sed -i 's/level: info/level: warning/' "$demo_dir/mailcloak.yaml"
    "$bin/mailcloak" serve --config "$demo_dir/mailcloak.yaml" &
    server_pid=$!
    wait_port "$mailcloak_port"
    echo "== mailcloak, $threads reactor thread(s), policy"
    load "$mailcloak_port" policy bench/policy-rcpt.txt bench/policy-rcpt.mailcloak-expect.txt
    echo "== mailcloak, $threads reactor thread(s), socketmap"
    load "$mailcloak_port" socketmap bench/socketmap.txt bench/socketmap.mailcloak-expect.txt
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
done
