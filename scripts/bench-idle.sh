#!/bin/sh
# Measures the memory that mailcloak spends on each idle connection, as
# Postfix leaves them: every smtpd process keeps its policy connection open
# with no traffic for up to smtpd_policy_service_max_idle (300 s by default
# in Postfix 3.7). It builds release binaries, creates
# certificates with certs-example/make-certs.sh, starts a throwaway
# PostgreSQL and the Keycloak development directory with the demo data, and
# then, for each transport (mutual TLS, and plain TCP for comparison), starts
# a fresh `mailcloak serve` and:
#   1. warms it up with 64 connections for 2 s (caches, TLS, allocator);
#   2. reads VmRSS from /proc/PID/status ("before");
#   3. runs `mailcloak-bench --hold N`: N connections, each with a completed
#      handshake and one policy request, then held open with no traffic;
#   4. reads VmRSS while they are held ("held"), and again after they closed;
#   5. prints (held - before) / N in KiB per connection.
# Target for mutual TLS: at most 28 KiB per idle connection.
# Settings through the environment: BENCH_IDLE_CONNECTIONS (2000),
# BENCH_IDLE_SECONDS (20, the hold), BENCH_SERVER_THREADS (1),
# BENCH_IDLE_TRANSPORTS ("tls plain"), BENCH_SCRATCH_PATH (a SwiftPM scratch
# path; default .build).
set -eu

cd "$(dirname "$0")/.."
. scripts/lib/bench-env.sh

count=${BENCH_IDLE_CONNECTIONS:-2000}
hold_seconds=${BENCH_IDLE_SECONDS:-20}
server_threads=${BENCH_SERVER_THREADS:-1}
transports=${BENCH_IDLE_TRANSPORTS:-"tls plain"}
target_kib=28
pg_port=15437
keycloak_port=18084
mailcloak_port=17033

# The daemon and the load generator each need a descriptor per connection.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((count + 256)) ]; then
    ulimit -n $((count + 256)) || {
        echo "bench-idle.sh: $((count + 256)) open files needed, ulimit -n is $(ulimit -n)" >&2
        exit 1
    }
fi

bench_build_release "${BENCH_SCRATCH_PATH:-}" mailcloak mailcloakctl mailcloak-bench

bench_make_dir mailcloak-bench-idle
certs="$demo_dir/certs"

server_pid=""
bench_pid=""
cleanup() {
    bench_cleanup "$bench_pid" "$server_pid"
}
trap cleanup EXIT INT TERM

certs-example/make-certs.sh "$certs" mailcloak.example.internal mx1 >/dev/null
bench_start_directory "$pg_port" "$keycloak_port"

# Runs mailcloak-bench against the daemon with the options of transport $1, then more options.
load() {
    transport=$1
    shift
    set -- --target "tcp:127.0.0.1:$mailcloak_port" --protocol policy --requests-file bench/policy-rcpt.txt \
        --expect-file bench/policy-rcpt.mailcloak-expect.txt "$@"
    if [ "$transport" = tls ]; then
        set -- "$@" --tls --cert "$certs/client-mx1.crt" --key "$certs/client-mx1.key" --ca "$certs/ca.crt" \
            --server-name mailcloak.example.internal
    fi
    "$bin/mailcloak-bench" "$@"
}

bench_print_machine openssl
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for transport in $transports; do
    if [ "$transport" = tls ]; then
        demo_write_config "$mailcloak_port" "$server_threads" "$demo_dir/mailcloak.yaml" "$certs"
    else
        demo_write_config "$mailcloak_port" "$server_threads" "$demo_dir/mailcloak.yaml"
    fi
    # Every connection comes from 127.0.0.1, so the per-source limit (1000 by default) must allow them all.
    sed -i -e 's/level: info/level: warning/' \
        -e "s/^  reactor_threads: .*/&\n  max_connections_per_source: $((count + 100))\n  max_connections: $((count + 100))/" \
        "$demo_dir/mailcloak.yaml"
    printf 'metrics:\n  enabled: false\n' >>"$demo_dir/mailcloak.yaml"
    "$bin/mailcloak" serve --config "$demo_dir/mailcloak.yaml" &
    server_pid=$!
    bench_wait_port "$mailcloak_port"

    echo "== $transport: warm-up, 64 connections for 2 s"
    load "$transport" --connections 64 --duration 2 | grep -E '^(throughput|errors|mismatches)'
    sleep 1
    before=$(bench_rss_kib "$server_pid")

    echo "== $transport: holding $count idle connections for $hold_seconds s"
    load "$transport" --hold "$count" --hold-seconds "$hold_seconds" --timeout 30 >"$demo_dir/hold.out" 2>&1 &
    bench_pid=$!
    tries=0
    until grep -q '^holding' "$demo_dir/hold.out"; do
        tries=$((tries + 1))
        if [ "$tries" -gt 1200 ] || ! kill -0 "$bench_pid" 2>/dev/null; then
            cat "$demo_dir/hold.out" >&2
            echo "bench-idle.sh: the connections were not established" >&2
            exit 1
        fi
        sleep 0.1
    done
    # Let the server finish the handshakes' last writes before reading its memory.
    sleep 2
    held=$(bench_rss_kib "$server_pid")
    open_connections=$(ls "/proc/$server_pid/fd" | wc -l)
    status=0
    wait "$bench_pid" || status=$?
    bench_pid=""
    cat "$demo_dir/hold.out"
    sleep 1
    after=$(bench_rss_kib "$server_pid")
    [ "$status" -eq 0 ] || echo "bench-idle.sh: mailcloak-bench exited with status $status" >&2

    echo "VmRSS KiB: before $before  held $held  after close $after  (server descriptors while held: $open_connections)"
    awk -v before="$before" -v held="$held" -v count="$count" -v transport="$transport" -v target="$target_kib" \
        'BEGIN {
            per = (held - before) / count
            line = sprintf("%s: %.1f KiB per idle connection", transport, per)
            if (transport == "tls") line = line sprintf(" (target: at most %d KiB)", target)
            print line
        }'
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
done
