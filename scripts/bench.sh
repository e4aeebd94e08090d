#!/bin/sh
# Measures mailcloak against the no-decision baseline responder with the same
# load generator in the same run: policy and socketmap requests over
# persistent plain-TCP connections with warm caches. Prints both results.
# Settings through the environment: BENCH_CONNECTIONS (64), BENCH_SECONDS (10),
# BENCH_SERVER_THREADS (1 and 2 are both run when unset), BENCH_CLIENT_THREADS (1).
set -eu

cd "$(dirname "$0")/.."
. scripts/lib/bench-env.sh

connections=${BENCH_CONNECTIONS:-64}
seconds=${BENCH_SECONDS:-10}
server_threads=${BENCH_SERVER_THREADS:-"1 2"}
client_threads=${BENCH_CLIENT_THREADS:-1}
pg_port=15434
keycloak_port=18081
mailcloak_port=17028
baseline_port=17027
bench_make_dir mailcloak-bench

bench_build_release "" mailcloak mailcloakctl mailcloak-bench baseline-responder

server_pid=""
cleanup() {
    bench_cleanup "$server_pid"
}
trap cleanup EXIT INT TERM

bench_start_directory "$pg_port" "$keycloak_port"

# Runs the load generator: $1 port, $2 protocol, $3 requests file, $4 expect file or "".
load() {
    expect=""
    [ -n "$4" ] && expect="--expect-file $4"
    # shellcheck disable=SC2086
    "$bin/mailcloak-bench" --target "tcp:127.0.0.1:$1" --protocol "$2" --requests-file "$3" $expect \
        --connections "$connections" --duration "$seconds" --warmup 1 --threads "$client_threads"
}

bench_print_machine
echo "load: $connections persistent connections, $seconds s after 1 s warmup, $client_threads client thread(s)"
for threads in $server_threads; do
    "$bin/baseline-responder" 127.0.0.1 "$baseline_port" "$threads" &
    server_pid=$!
    bench_wait_port "$baseline_port"
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
    bench_wait_port "$mailcloak_port"
    echo "== mailcloak, $threads reactor thread(s), policy"
    load "$mailcloak_port" policy bench/policy-rcpt.txt bench/policy-rcpt.mailcloak-expect.txt
    echo "== mailcloak, $threads reactor thread(s), socketmap"
    load "$mailcloak_port" socketmap bench/socketmap.txt bench/socketmap.mailcloak-expect.txt
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
done
