#!/bin/sh
# Measures mailcloak's decisions per second through the shared Redis cache:
# once with the in-process cache (L1) shrunk to one entry, so nearly every
# decision waits for a worker that reads Redis (cold L1, warm Redis), and
# once with the default L1 (everything warm). Uses the same load generator,
# request files and demo data as scripts/bench.sh. Prints both results and
# the user queries the Keycloak development directory served.
# Settings through the environment: BENCH_CONNECTIONS (64), BENCH_SECONDS (10),
# BENCH_SERVER_THREADS (2), BENCH_CLIENT_THREADS (1), BENCH_SCRATCH_PATH (.build).
set -eu

cd "$(dirname "$0")/.."
. scripts/lib/bench-env.sh

connections=${BENCH_CONNECTIONS:-64}
seconds=${BENCH_SECONDS:-10}
threads=${BENCH_SERVER_THREADS:-2}
client_threads=${BENCH_CLIENT_THREADS:-1}
scratch=${BENCH_SCRATCH_PATH:-.build}
pg_port=${BENCH_PG_PORT:-15436}
keycloak_port=${BENCH_KEYCLOAK_PORT:-18083}
redis_port=${BENCH_REDIS_PORT:-16380}
mailcloak_port=${BENCH_MAILCLOAK_PORT:-17030}
bench_make_dir mailcloak-bench-cache

bench_build_release "$scratch" mailcloak mailcloakctl mailcloak-bench

server_pid=""
redis_pid=""
cleanup() {
    bench_cleanup "$server_pid" "$redis_pid"
}
trap cleanup EXIT INT TERM

bench_start_directory "$pg_port" "$keycloak_port"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$demo_dir" \
    --logfile "$demo_dir/redis.log" &
redis_pid=$!

bench_wait_port "$redis_port"

# Writes the daemon configuration with the given L1 size: $1 max_entries.
write_config() {
    demo_write_config "$mailcloak_port" "$threads" "$demo_dir/mailcloak.yaml"
    sed -i 's/level: info/level: warning/' "$demo_dir/mailcloak.yaml"
    sed -i "/client_secret: demo-secret/a\\
  cache:\\
    max_entries: $1\\
  redis:\\
    host: 127.0.0.1\\
    port: $redis_port" "$demo_dir/mailcloak.yaml"
}

user_queries() {
    python3 -c "import json, urllib.request; print(json.load(urllib.request.urlopen(
        'http://127.0.0.1:$keycloak_port/_dev/stats'))['requests'].get('users', 0))"
}

# Runs one configuration: $1 label, $2 L1 max_entries.
run() {
    write_config "$2"
    "$bin/mailcloak" serve --config "$demo_dir/mailcloak.yaml" &
    server_pid=$!
    bench_wait_port "$mailcloak_port"
    before=$(user_queries)
    echo "== mailcloak, $threads reactor thread(s), $1, policy"
    "$bin/mailcloak-bench" --target "tcp:127.0.0.1:$mailcloak_port" --protocol policy \
        --requests-file bench/policy-rcpt.txt --expect-file bench/policy-rcpt.mailcloak-expect.txt \
        --connections "$connections" --duration "$seconds" --warmup 1 --threads "$client_threads"
    echo "keycloak user queries during the run: $(($(user_queries) - before))"
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

bench_print_machine
echo "load: $connections persistent connections, $seconds s after 1 s warmup, $client_threads client thread(s)"
run "L1 and Redis warm" 100000
run "L1 of 1 entry, Redis warm" 1
