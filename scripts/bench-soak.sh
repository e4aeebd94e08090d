#!/bin/sh
# Runs mailcloak at a steady load for a long time and watches its memory.
# It builds release binaries, creates certificates with
# certs-example/make-certs.sh, starts a throwaway PostgreSQL and the Keycloak
# development directory with the demo data, and starts `mailcloak serve` with
# one mutual-TLS listener. Then it:
#   1. measures the peak rate: 64 persistent mutual-TLS connections, closed
#      loop (each connection sends its next request as soon as it has its
#      reply), 1 s warm-up, then BENCH_PEAK_SECONDS measured;
#   2. runs `mailcloak-bench --rate` at half of that peak over 64 persistent
#      mutual-TLS connections for BENCH_SOAK_SECONDS, open loop: latency runs
#      from each request's scheduled send time, so a stall is not hidden;
#   3. samples the server's VmRSS (/proc/PID/status) every BENCH_SAMPLE_SECONDS;
#   4. prints the first, last, min and max sample, the drift from the first
#      to the last sample in percent (target: within 5%), and p99 at half
#      rate (target: under 2 ms). For comparison it also prints the bucket of
#      the server's own p99 (from a decoded request to its reply, in the
#      mailcloak_request_duration_seconds histogram of /metrics), which leaves
#      out the kernel, TLS and the load generator.
# Every reply is checked against bench/policy-rcpt.mailcloak-expect.txt.
# Settings through the environment: BENCH_SOAK_SECONDS (600),
# BENCH_PEAK_SECONDS (5), BENCH_SAMPLE_SECONDS (10), BENCH_CONNECTIONS (64),
# BENCH_SERVER_THREADS (1), BENCH_SCRATCH_PATH (a SwiftPM scratch path;
# default .build), BENCH_RATE (requests per second of the soak instead of
# half the peak), BENCH_SERVER_PIN and BENCH_LOAD_PIN (a command put before
# the server and the load generator, such as "taskset -c 1" and
# "taskset -c 0"), BENCH_SOAK_SAMPLES (a file that keeps the samples, one
# "seconds KiB" pair a line).
set -eu

cd "$(dirname "$0")/.."
. scripts/lib/bench-env.sh

server_pin=${BENCH_SERVER_PIN:-}
load_pin=${BENCH_LOAD_PIN:-}
soak_seconds=${BENCH_SOAK_SECONDS:-600}
peak_seconds=${BENCH_PEAK_SECONDS:-5}
sample_seconds=${BENCH_SAMPLE_SECONDS:-10}
connections=${BENCH_CONNECTIONS:-64}
server_threads=${BENCH_SERVER_THREADS:-1}
pg_port=15438
keycloak_port=18085
mailcloak_port=17034
metrics_port=17035

bench_build_release "${BENCH_SCRATCH_PATH:-}" mailcloak mailcloakctl mailcloak-bench

bench_make_dir mailcloak-bench-soak
certs="$demo_dir/certs"
samples=${BENCH_SOAK_SAMPLES:-$demo_dir/samples.txt}
: >"$samples"

server_pid=""
bench_pid=""
cleanup() {
    bench_cleanup "$bench_pid" "$server_pid"
}
trap cleanup EXIT INT TERM

certs-example/make-certs.sh "$certs" mailcloak.example.internal mx1 >/dev/null
bench_start_directory "$pg_port" "$keycloak_port"

demo_write_config "$mailcloak_port" "$server_threads" "$demo_dir/mailcloak.yaml" "$certs"
sed -i 's/level: info/level: warning/' "$demo_dir/mailcloak.yaml"
printf 'metrics:\n  listen: "127.0.0.1:%s"\n' "$metrics_port" >>"$demo_dir/mailcloak.yaml"
$server_pin "$bin/mailcloak" serve --config "$demo_dir/mailcloak.yaml" &
server_pid=$!
bench_wait_port "$mailcloak_port"

# Runs mailcloak-bench over mutual TLS with the given options.
load() {
    $load_pin "$bin/mailcloak-bench" --target "tcp:127.0.0.1:$mailcloak_port" --protocol policy \
        --requests-file bench/policy-rcpt.txt --expect-file bench/policy-rcpt.mailcloak-expect.txt \
        --connections "$connections" --tls --cert "$certs/client-mx1.crt" --key "$certs/client-mx1.key" \
        --ca "$certs/ca.crt" --server-name mailcloak.example.internal "$@"
}

# Prints the cumulative buckets of the server's policy latency histogram, one "le count" pair a line.
policy_buckets() {
    curl -fsS "http://127.0.0.1:$metrics_port/metrics" | awk '
        /^mailcloak_request_duration_seconds_bucket/ && /service="policy"/ {
            match($0, /le="[^"]*"/)
            print substr($0, RSTART + 4, RLENGTH - 5), $NF
        }'
}

bench_print_machine openssl
echo "== peak: $connections connections, closed loop, $peak_seconds s after 1 s warm-up"
load --duration "$peak_seconds" --warmup 1 >"$demo_dir/peak.out"
cat "$demo_dir/peak.out"
peak=$(awk '/^throughput/ { print $2 }' "$demo_dir/peak.out")
[ -n "$peak" ] && [ "$peak" -gt 0 ] || { echo "bench-soak.sh: no peak rate measured" >&2; exit 1; }
rate=${BENCH_RATE:-$((peak / 2))}

echo "== soak: $rate requests/s (half of $peak) for $soak_seconds s, VmRSS every $sample_seconds s"
policy_buckets >"$demo_dir/buckets-before.txt"
load --rate "$rate" --duration "$soak_seconds" --warmup 1 >"$demo_dir/soak.out" 2>&1 &
bench_pid=$!
started=$(date +%s)
sleep 1
while kill -0 "$bench_pid" 2>/dev/null; do
    sleep "$sample_seconds"
    kill -0 "$bench_pid" 2>/dev/null || break
    echo "$(($(date +%s) - started)) $(bench_rss_kib "$server_pid")" >>"$samples"
done
status=0
wait "$bench_pid" || status=$?
bench_pid=""
policy_buckets >"$demo_dir/buckets-after.txt"
cat "$demo_dir/soak.out"
[ "$status" -eq 0 ] || echo "bench-soak.sh: mailcloak-bench exited with status $status" >&2
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

p99=$(awk '/^latency/ { for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1) }' "$demo_dir/soak.out")
awk -v p99="$p99" '
    { if (NR == 1) first = $2; last = $2
      if (NR == 1 || $2 < min) min = $2
      if (NR == 1 || $2 > max) max = $2 }
    END {
        if (NR == 0) { print "no VmRSS sample taken"; exit 1 }
        printf "VmRSS KiB over %d samples: first %d  last %d  min %d  max %d\n", NR, first, last, min, max
        printf "drift first to last: %+.1f%% (target: within 5%%)\n", 100 * (last - first) / first
        printf "p99 at half rate: %d us (target: under 2000 us)\n", p99
    }' "$samples"
# Counts since the soak began: prints the first bucket that contains 99% of them.
paste "$demo_dir/buckets-before.txt" "$demo_dir/buckets-after.txt" | awk '
    { bound[NR] = $1; count[NR] = $4 - $2 }
    END {
        total = count[NR]
        if (total == 0) { print "server-side p99: no policy request counted in /metrics"; exit }
        for (i = 1; i <= NR; i++) if (count[i] >= 0.99 * total) break
        printf "server-side p99 at half rate (decoded request to reply sent): at most %s s (histogram bucket)\n", bound[i]
    }'
