#!/bin/sh
# Measures mailcloak's mutual-TLS listener against baseline-responder --tls
# (a minimal mutual-TLS responder that makes no decision) with the same load
# generator in the same run:
#   - policy requests over persistent TLS connections, with latency percentiles;
#   - a new connection per request: full handshakes per second, then resumed
#     handshakes per second (each connection slot offers its last session).
# Both servers listen at once and the measurements alternate between them,
# round after round, so that load from other processes on the machine falls
# on both alike; the summary gives the median of the rounds.
# Every reply is checked against bench/policy-rcpt.*-expect.txt. Certificates
# come from certs-example/make-certs.sh in a temporary folder; the client is
# node mx1, which the listener's access rule grants policy and every map.
# Settings through the environment: BENCH_CONNECTIONS (64), BENCH_SECONDS
# (10), BENCH_SERVER_THREADS (1; "1 2" runs both), BENCH_CLIENT_THREADS (1),
# BENCH_HANDSHAKE_CONNECTIONS (16, connection slots in the handshake runs),
# BENCH_ROUNDS (3, rounds of the six measurements),
# BENCH_SCRATCH_PATH (a SwiftPM scratch path; default .build), BENCH_PERF_DIR
# (when set, perf records each server during its persistent run and writes
# perf-SERVER-THREADS.txt there; the recording slows the server a little).
set -eu

cd "$(dirname "$0")/.."
. scripts/lib/bench-env.sh

connections=${BENCH_CONNECTIONS:-64}
seconds=${BENCH_SECONDS:-10}
server_threads=${BENCH_SERVER_THREADS:-1}
client_threads=${BENCH_CLIENT_THREADS:-1}
handshake_connections=${BENCH_HANDSHAKE_CONNECTIONS:-16}
perf_dir=${BENCH_PERF_DIR:-}
rounds=${BENCH_ROUNDS:-3}
pg_port=15436
keycloak_port=18083
mailcloak_port=17032
baseline_port=17031

bench_build_release "${BENCH_SCRATCH_PATH:-}" mailcloak mailcloakctl mailcloak-bench baseline-responder

bench_make_dir mailcloak-bench-tls
certs="$demo_dir/certs"

server_pid=""
cleanup() {
    # shellcheck disable=SC2086 # $server_pid is a list of process ids
    bench_cleanup $server_pid
}
trap cleanup EXIT INT TERM

certs-example/make-certs.sh "$certs" mailcloak.example.internal mx1 >/dev/null
bench_start_directory "$pg_port" "$keycloak_port"

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
  allow_root: true
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

# Runs one measurement against one server: $1 server name, $2 port, $3
# expect file, $4 threads, $5 round, $6 persistent, full or resumed. With
# BENCH_PERF_DIR, perf records the server ($7 its process id) during the
# persistent run of round 1.
measure() {
    echo "== $1, $4 thread(s), round $5, policy, $6"
    case $6 in
    persistent) set -- "$@" --connections "$connections" ;;
    full) set -- "$@" --connections "$handshake_connections" --new-connection-per-request ;;
    resumed) set -- "$@" --connections "$handshake_connections" --new-connection-per-request --resume ;;
    esac
    server=$1
    server_threads_now=$4
    name="$1-$4-$6-$5"
    recording=""
    if [ -n "$perf_dir" ] && [ "$5" = 1 ] && [ "$6" = persistent ]; then
        (sleep 2 && perf record -g -p "$7" -o "$demo_dir/perf.data" -- sleep $((seconds - 2)) \
            >/dev/null 2>&1) &
        recording=$!
    fi
    port=$2
    expect=$3
    shift 7
    load "$name" "$port" "$expect" "$@"
    if [ -n "$recording" ]; then
        wait "$recording" || true
        mkdir -p "$perf_dir"
        perf report -i "$demo_dir/perf.data" --no-children --percent-limit 0.5 --stdio \
            >"$perf_dir/perf-$server-$server_threads_now.txt" 2>/dev/null || true
        perf report -i "$demo_dir/perf.data" --no-children --sort dso --stdio \
            >"$perf_dir/perf-$server-$server_threads_now-dso.txt" 2>/dev/null || true
        echo "perf reports written to $perf_dir/perf-$server-$server_threads_now.txt and -dso.txt"
    fi
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

bench_print_machine openssl
echo "load: $seconds s after 1 s warmup, $client_threads client thread(s), mutual TLS as node mx1"
# Prints the median of the numbers on standard input, one a line.
median() {
    sort -n | awk '{ value[NR] = $1 } END { if (NR % 2) print value[(NR + 1) / 2]; else print int((value[NR / 2] + value[NR / 2 + 1]) / 2) }'
}

# Prints mailcloak's share of the baseline in percent: $1 mailcloak, $2 baseline.
share() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "-" }'
}

for threads in $server_threads; do
    "$bin/baseline-responder" --tls "$certs/server.crt" "$certs/server.key" "$certs/ca.crt" \
        127.0.0.1 "$baseline_port" "$threads" 2>/dev/null &
    baseline_pid=$!
    server_pid=$baseline_pid
    bench_wait_port "$baseline_port"
    write_tls_config "$mailcloak_port" "$threads" "$demo_dir/mailcloak.yaml"
    "$bin/mailcloak" serve --config "$demo_dir/mailcloak.yaml" &
    mailcloak_pid=$!
    server_pid="$baseline_pid $mailcloak_pid"
    bench_wait_port "$mailcloak_port"
    round=1
    while [ "$round" -le "$rounds" ]; do
        for run in persistent full resumed; do
            measure baseline-responder "$baseline_port" bench/policy-rcpt.baseline-expect.txt \
                "$threads" "$round" "$run" "$baseline_pid"
            measure mailcloak "$mailcloak_port" bench/policy-rcpt.mailcloak-expect.txt \
                "$threads" "$round" "$run" "$mailcloak_pid"
        done
        round=$((round + 1))
    done
    kill $server_pid
    wait $server_pid 2>/dev/null || true
    server_pid=""
done

echo "== summary: medians of $rounds rounds, mailcloak as a share of baseline-responder --tls"
printf '%-8s %-24s %10s %10s %7s  %s\n' threads measure baseline mailcloak share "share per round"
for threads in $server_threads; do
    for kind in persistent:requests full:handshakes resumed:handshakes; do
        run=${kind%%:*}
        unit=${kind#*:}
        rounds_shares=""
        round=1
        while [ "$round" -le "$rounds" ]; do
            base=$(figure "baseline-responder-$threads-$run-$round" "$unit")
            ours=$(figure "mailcloak-$threads-$run-$round" "$unit")
            echo "$base" >>"$demo_dir/baseline-$threads-$run.figures"
            echo "$ours" >>"$demo_dir/mailcloak-$threads-$run.figures"
            rounds_shares="$rounds_shares $(share "$ours" "$base")"
            round=$((round + 1))
        done
        base=$(median <"$demo_dir/baseline-$threads-$run.figures")
        ours=$(median <"$demo_dir/mailcloak-$threads-$run.figures")
        printf '%-8s %-24s %10s %10s %7s %s\n' "$threads" "$run $unit/s" "$base" "$ours" "$(share "$ours" "$base")" \
            "$rounds_shares"
    done
done
