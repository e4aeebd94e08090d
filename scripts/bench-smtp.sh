#!/bin/bash
# Measures what mailcloak costs a Postfix node, in messages per second
# accepted by smtpd, all on loopback. Postfix's smtp-source sends the same
# messages to private Postfix instances (scripts/testenv/postfix.sh)
# that differ only in their recipient checks and lookup tables:
#   static     no policy service; hash: tables for domains, aliases and
#              mailboxes (the baseline);
#   mailcloak  the lines of deploy/postfix-node/main.cf.snippet: the policy
#              service and socketmap: tables for domains, aliases and
#              mailboxes, through the node's stunnel client, HAProxy from
#              deploy/haproxy/haproxy.cfg (TCP, PROXY protocol v2, checks of
#              /readyz) and mutual TLS to BENCH_INSTANCES mailcloak instances;
#   nopolicy   the mailcloak setup without its check_policy_service line:
#              the same socketmap: tables through the same path, so that
#              mailcloak against nopolicy is the cost of the policy service;
#   pgsql      no policy service; Postfix's own pgsql: tables (postfix-pgsql)
#              for domains and aliases, and the hash: mailbox table, because
#              the users live in the identity provider, not in PostgreSQL.
# Each message has one recipient: smtp-source -N numbers them 1r@example.com,
# 2r@example.com and so on, and scripts/lib/smtp-bench-data.py makes every
# fourth one a user of the Keycloak development directory and the others
# aliases in PostgreSQL. Every instance discards what it accepts
# (virtual_transport = discard:), and each run counts the discard deliveries
# and the reject and warning lines in the instance's log, so a run that is
# fast because it rejects mail fails.
# Warm-up runs fill mailcloak's identity caches and the page cache: one per
# setup, and a second for mailcloak, whose instances each cache on their own.
# Then BENCH_ROUNDS rounds run the setups in turn, so that load from other
# processes falls on all of them alike, and the summary gives medians.
#
# Settings through the environment: BENCH_MESSAGES (20000, messages per run),
# BENCH_SESSIONS (20, smtp-source sessions in parallel), BENCH_ROUNDS (3),
# BENCH_INSTANCES (3, mailcloak instances behind HAProxy, 1 to 9),
# BENCH_PROCESS_LIMIT (50, Postfix default_process_limit, so at most that
# many smtpd and cleanup processes), BENCH_SETUPS ("static mailcloak pgsql";
# nopolicy may be added),
# BENCH_SCRATCH_PATH (a SwiftPM scratch path for the release build; default
# .build), BENCH_KEEP (1 keeps the work folder with every log),
# BENCH_NODE_CPUS and BENCH_CLUSTER_CPUS (CPU lists for taskset -c, both or
# neither; see below).
#
# In service the cluster runs on other hosts than the Postfix node, and the
# senders are elsewhere too. On one machine every process shares its cores,
# so the cluster's CPU time, and the load average it adds, slows the node
# down as well. With BENCH_NODE_CPUS=0 BENCH_CLUSTER_CPUS=1 the node
# (the Postfix instances and stunnel) keeps CPU 0 to itself, and the cluster
# (HAProxy, mailcloak, PostgreSQL, the Keycloak development directory) and
# smtp-source share CPU 1: the node's message rate then depends on the
# node's own work, as on a separate host.
# Runs as root (Postfix's master does) and needs ports 15440, 18090 and
# 17200 to 17237 on 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
[[ -x /opt/swift/usr/bin/swift ]] && PATH="/opt/swift/usr/bin:$PATH"
export PATH
. scripts/lib/demo-env.sh

messages=${BENCH_MESSAGES:-20000}
sessions=${BENCH_SESSIONS:-20}
rounds=${BENCH_ROUNDS:-3}
instances=${BENCH_INSTANCES:-3}
process_limit=${BENCH_PROCESS_LIMIT:-50}
setups=${BENCH_SETUPS:-"static mailcloak pgsql"}
keep=${BENCH_KEEP:-0}
node_cpus=${BENCH_NODE_CPUS:-}
cluster_cpus=${BENCH_CLUSTER_CPUS:-}

pg_port=15440
keycloak_port=18090
stunnel_port=17200
haproxy_port=17201
# mailcloak instance i listens on 17210+i (mutual TLS) and 17220+i (metrics).
mailcloak_base_port=17210
metrics_base_port=17220
# Each Postfix instance takes its port and the next one (postfix.sh).
declare -A smtp_port=([static]=17230 [mailcloak]=17232 [pgsql]=17234 [nopolicy]=17236)
recipient_local=r
recipient_domain=example.com
sender=sender@remote.test
delivery_timeout_seconds=300
# The discard(8) transport logs this next-hop text with each delivery.
discard_tag=smtp-bench

die() {
    echo "bench-smtp.sh: $*" >&2
    exit 1
}

check_number() {
    [[ $2 =~ ^[0-9]+$ ]] && (($2 >= $3 && $2 <= $4)) || die "invalid $1 '$2': expected $3 to $4"
}

check_number BENCH_MESSAGES "$messages" 1 1000000
check_number BENCH_SESSIONS "$sessions" 1 1000
check_number BENCH_ROUNDS "$rounds" 1 100
check_number BENCH_INSTANCES "$instances" 1 9
check_number BENCH_PROCESS_LIMIT "$process_limit" 1 1000
for setup in $setups; do
    [[ -n ${smtp_port[$setup]:-} ]] || die "invalid setup '$setup' in BENCH_SETUPS: expected static, mailcloak, nopolicy or pgsql"
done
[[ -z $node_cpus && -z $cluster_cpus ]] || [[ -n $node_cpus && -n $cluster_cpus ]] ||
    die "set both BENCH_NODE_CPUS and BENCH_CLUSTER_CPUS, or neither"
for cpus in "$node_cpus" "$cluster_cpus"; do
    [[ -z $cpus ]] || taskset -c "$cpus" true 2>/dev/null ||
        die "invalid CPU list '$cpus': expected a list for taskset -c (such as 0 or 0-1) of CPUs this machine has"
done
[[ $(id -u) == 0 ]] || die "must run as root (the Postfix master runs as root)"

scripts/install-deps.sh

scratch=()
[[ -n ${BENCH_SCRATCH_PATH:-} ]] && scratch=(--scratch-path "$BENCH_SCRATCH_PATH")
for product in mailcloak mailcloakctl; do
    if ! output=$(swift build -c release "${scratch[@]}" --product "$product" 2>&1); then
        printf '%s\n' "$output" | grep -E 'error' | head -20 >&2
        die "building $product failed"
    fi
done
bin=$(swift build -c release "${scratch[@]}" --show-bin-path)

demo_dir=$(mktemp -d /tmp/mailcloak-bench-smtp.XXXXXX)
chmod 0755 "$demo_dir"
certs=$demo_dir/certs
mailcloak_pids=()
haproxy_pid=""
started_postfix=()

cleanup() {
    local dir pid
    for dir in "${started_postfix[@]}"; do
        scripts/testenv/postfix.sh stop "$dir" >/dev/null 2>&1 || true
    done
    demo_stop_stunnel
    [[ -n $haproxy_pid ]] && kill "$haproxy_pid" 2>/dev/null || true
    for pid in "${mailcloak_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${mailcloak_pids[@]}" $haproxy_pid ${stunnel_pid:-}; do
        wait "$pid" 2>/dev/null || true
    done
    demo_stop_keycloak
    demo_stop_postgres
    if [[ $keep == 1 ]]; then
        echo "bench-smtp.sh: kept $demo_dir" >&2
    else
        rm -rf "$demo_dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until $1 (a command) succeeds, for at most $2 tenths of a second; $3 names what failed.
wait_until() {
    local tries=0
    until eval "$1" >/dev/null 2>&1; do
        tries=$((tries + 1))
        ((tries <= $2)) || die "$3"
        sleep 0.1
    done
}

# --- Data: PostgreSQL, the Keycloak development directory, lookup tables ---

start_data_services() {
    python3 scripts/lib/smtp-bench-data.py --count "$messages" --local "$recipient_local" \
        --domain "$recipient_domain" --base-realm dev/keycloak-dev/demo-realm.json --out "$demo_dir/data"
    demo_start_postgres "$pg_port"
    MAILCLOAK_DATABASE_URL=$database_url "$bin/mailcloakctl" migrate >/dev/null
    psql "$database_url" -q -v ON_ERROR_STOP=1 -f "$demo_dir/data/data.sql" >/dev/null

    python3 dev/keycloak-dev/keycloak_dev.py --port "$keycloak_port" --data "$demo_dir/data/realm.json" \
        >"$demo_dir/keycloak-dev.log" 2>&1 &
    keycloak_pid=$!
    wait_until "grep -q '^listening' '$demo_dir/keycloak-dev.log'" 300 \
        "Keycloak development directory did not start; see $demo_dir/keycloak-dev.log"

    mkdir -p "$demo_dir/maps"
    local table
    for table in domains aliases mailboxes; do
        cp "$demo_dir/data/$table.txt" "$demo_dir/maps/$table"
        postmap "hash:$demo_dir/maps/$table"
    done
    # Postfix's own PostgreSQL tables follow the rules of mailcloak's snapshot.
    # An enabled alias in an enabled domain rewrites to USERNAME@DOMAIN (the
    # alias's domain), or to USERNAME when that is an address already.
    cat >"$demo_dir/maps/pgsql-domains.cf" <<EOF
hosts = 127.0.0.1:$pg_port
user = postgres
dbname = mailcloak
query = SELECT name FROM domains WHERE name = '%s' AND enabled
EOF
    cat >"$demo_dir/maps/pgsql-aliases.cf" <<EOF
hosts = 127.0.0.1:$pg_port
user = postgres
dbname = mailcloak
query = SELECT CASE WHEN position('@' IN a.username) > 0 THEN a.username
    ELSE lower(a.username) || '@' || a.domain END
    FROM aliases a JOIN domains d ON d.name = a.domain
    WHERE a.address = '%s' AND a.enabled AND d.enabled
EOF
}

# --- mailcloak instances, HAProxy and the stunnel client ---

# Writes the configuration of instance $1 to $2.
write_mailcloak_config() {
    cat >"$2" <<YAML
listeners:
  - name: bench-smtp-$1
    address: "tcp:127.0.0.1:$((mailcloak_base_port + $1))"
    proxy_protocol_from: [127.0.0.1]
    tls:
      certificate: $certs/server.crt
      key: $certs/server.key
      client_ca: $certs/ca.crt
      session_ticket_keys: $certs/ticket-keys
    acl:
      - name: mx1
        identities: ["uri:spiffe://mail.example/node/mx1"]
        services: [policy, "socketmap:*"]
server:
  reactor_threads: 1
  # The benchmark runs as root, as Postfix's master must.
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
  # Longer than the whole benchmark, so the warm-up runs fill the cache for
  # every round. With the default (5m), later rounds would query Keycloak again.
  cache:
    positive_ttl: 2h
    max_staleness: 0s
metrics:
  listen: "127.0.0.1:$((metrics_base_port + $1))"
log:
  level: warning
YAML
}

start_mailcloak() {
    certs-example/make-certs.sh "$certs" mailcloak.example.internal mx1 >/dev/null
    # One ticket key for every instance, as deploy/ advises for a cluster, so
    # that a stunnel connection can resume its TLS session on whichever instance
    # HAProxy picks.
    (umask 077 && openssl rand -hex 80 >"$certs/ticket-keys")
    local i
    for ((i = 1; i <= instances; i++)); do
        write_mailcloak_config "$i" "$demo_dir/mailcloak-$i.yaml"
        "$bin/mailcloak" serve --config "$demo_dir/mailcloak-$i.yaml" >"$demo_dir/mailcloak-$i.log" 2>&1 &
        mailcloak_pids+=($!)
    done
    for ((i = 1; i <= instances; i++)); do
        wait_until "curl -sf http://127.0.0.1:$((metrics_base_port + i))/readyz" 300 \
            "mailcloak instance $i is not ready after 30 s; see $demo_dir/mailcloak-$i.log"
    done
}

# Writes deploy/haproxy/haproxy.cfg with the benchmark's changes. The
# frontend binds 127.0.0.1:$haproxy_port, each instance gets a server line
# with its own check port, and the runtime API socket moves to $demo_dir.
# The syslog target and the stats frontend go. The global maxconn drops from
# 40000 to 4096, because HAProxy needs two descriptors per connection and
# fails to start when the hard RLIMIT_NOFILE is lower (20000 on the machine
# of the recorded run). Every other line, timeouts and checks included,
# stays as shipped.
write_haproxy_config() {
    local i
    sed -e '/^    log \/dev\/log/d' \
        -e 's/^    maxconn 40000$/    maxconn 4096/' \
        -e "s|^    stats socket /run/haproxy/admin.sock|    stats socket $demo_dir/haproxy.sock|" \
        -e "s|^    bind :10443\$|    bind 127.0.0.1:$haproxy_port|" \
        -e '/^    server mailcloak[0-9]/d' \
        -e '/^# HAProxy.s own Prometheus metrics/,$d' \
        deploy/haproxy/haproxy.cfg >"$demo_dir/haproxy.cfg"
    for ((i = 1; i <= instances; i++)); do
        echo "    server mailcloak$i 127.0.0.1:$((mailcloak_base_port + i)) port $((metrics_base_port + i))" \
            >>"$demo_dir/haproxy.cfg"
    done
    grep -q "^    bind 127.0.0.1:$haproxy_port\$" "$demo_dir/haproxy.cfg" ||
        die "deploy/haproxy/haproxy.cfg has no 'bind :10443' line to point at 127.0.0.1:$haproxy_port"
}

# Prints how many HAProxy servers of backend mailcloak are UP.
haproxy_servers_up() {
    python3 - "$demo_dir/haproxy.sock" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
rows = [line.split(",") for line in data.decode().splitlines() if line.startswith("mailcloak,mailcloak")]
print(sum(1 for row in rows if row[17] == "UP"))
EOF
}

start_proxies() {
    write_haproxy_config
    haproxy -f "$demo_dir/haproxy.cfg" -db >"$demo_dir/haproxy.log" 2>&1 &
    haproxy_pid=$!
    wait_until "[ \"\$(haproxy_servers_up)\" = $instances ]" 300 \
        "HAProxy does not report $instances mailcloak servers UP after 30 s; see $demo_dir/haproxy.log"
    demo_start_stunnel "$stunnel_port" "$haproxy_port" "$certs"
    wait_until "postmap -q $recipient_domain socketmap:inet:127.0.0.1:$stunnel_port:domain" 100 \
        "no socketmap reply through stunnel and HAProxy; see $demo_dir/stunnel.log"
}

# --- Postfix instances ---

# Prints the main.cf settings of deploy/postfix-node/main.cf.snippet, one
# NAME=VALUE a line, with the stunnel client on 127.0.0.1:$stunnel_port,
# without config_directory and virtual_transport.
node_snippet_settings() {
    local dir=$demo_dir/node-snippet
    mkdir -p "$dir"
    sed "s/127\.0\.0\.1:10027/127.0.0.1:$stunnel_port/g" deploy/postfix-node/main.cf.snippet >"$dir/main.cf"
    # postconf warns about the missing master.cf. config_directory is the
    # folder itself, and virtual_transport (LMTP to Dovecot) is replaced by
    # the discard transport below.
    postconf -c "$dir" -n 2>/dev/null | sed -E 's/^([a-z0-9_]+) = ?/\1=/' |
        grep -v -E '^(config_directory|virtual_transport)='
}

# Prints the main.cf settings of setup $1, one NAME=VALUE a line. Every setup
# restricts recipients as the node snippet does, and discards what it
# accepts. static and pgsql leave the policy service out.
postfix_settings() {
    local maps=$demo_dir/maps
    echo "default_process_limit=$process_limit"
    echo "smtpd_relay_restrictions="
    if [[ $1 != mailcloak && $1 != nopolicy ]]; then
        echo "smtpd_recipient_restrictions=permit_mynetworks, reject_unauth_destination"
        echo "virtual_alias_domains="
    fi
    case $1 in
    static)
        echo "virtual_mailbox_domains=hash:$maps/domains"
        echo "virtual_alias_maps=hash:$maps/aliases"
        echo "virtual_mailbox_maps=hash:$maps/mailboxes"
        ;;
    mailcloak)
        node_snippet_settings
        ;;
    nopolicy)
        # The node snippet's settings, then its restrictions without the policy service.
        node_snippet_settings | grep -v '^smtpd_recipient_restrictions='
        echo "smtpd_recipient_restrictions=permit_mynetworks, reject_unauth_destination"
        ;;
    pgsql)
        echo "virtual_mailbox_domains=pgsql:$maps/pgsql-domains.cf"
        echo "virtual_alias_maps=pgsql:$maps/pgsql-aliases.cf"
        echo "virtual_mailbox_maps=hash:$maps/mailboxes"
        ;;
    esac
    echo "virtual_transport=discard:$discard_tag"
}

start_postfix() {
    local setup dir settings
    for setup in $setups; do
        dir=$demo_dir/postfix-$setup
        mapfile -t settings < <(postfix_settings "$setup")
        started_postfix+=("$dir")
        scripts/testenv/postfix.sh start "$dir" "${smtp_port[$setup]}" "127.0.0.1:$stunnel_port" "${settings[@]}" \
            >/dev/null
    done
}

# --- CPU placement ---

# Binds each process id in $2... and all its descendants, every thread of
# each, to the CPU list $1. Processes they start later inherit the binding.
pin_tree() {
    local cpus=$1 pid
    shift
    for pid in $(ps -e -o pid=,ppid= | awk -v roots="$*" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
        { parent[$1] = $2 }
        END {
            do {
                added = 0
                for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; added = 1 }
            } while (added)
            for (p in keep) print p
        }'); do
        taskset -a -p -c "$cpus" "$pid" >/dev/null 2>&1 || true
    done
}

pin_processes() {
    [[ -n $node_cpus ]] || return 0
    local setup masters=()
    for setup in $setups; do
        masters+=("$(head -n 1 "$demo_dir/postfix-$setup/spool/pid/master.pid" | tr -d ' ')")
    done
    pin_tree "$node_cpus" "${masters[@]}" ${stunnel_pid:-}
    pin_tree "$cluster_cpus" ${haproxy_pid:-} "${mailcloak_pids[@]}" \
        "$(head -n 1 "$demo_dir/pg/data/postmaster.pid")" "$keycloak_pid"
}

# Runs smtp-source with the arguments $@, on the cluster's CPUs when the
# processes are placed: the senders stand for other hosts, not the node.
run_smtp_source() {
    if [[ -n $cluster_cpus ]]; then
        taskset -c "$cluster_cpus" smtp-source "$@"
    else
        smtp-source "$@"
    fi
}

# --- Runs ---

# Prints, for each process id in $@, the CPU time in clock ticks that it and
# its descendants have used: their user and system time, and the time of
# the children they have reaped. A Postfix master reaps its smtpd and
# cleanup processes, so its tree counts the processes that have exited too.
tree_cpu_ticks() {
    python3 - "$@" <<'EOF'
import os, sys
processes = {}
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        with open(f"/proc/{entry}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    # After the command name: state, ppid, ... utime (12th), stime, cutime, cstime.
    processes[int(entry)] = (int(fields[1]), sum(int(value) for value in fields[11:15]))
children = {}
for pid, (parent, _) in processes.items():
    children.setdefault(parent, []).append(pid)
for root in map(int, sys.argv[1:]):
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        total += processes.get(pid, (0, 0))[1]
        pending.extend(children.get(pid, []))
    print(total)
EOF
}

# Prints the process ids whose CPU time a run of setup $1 reports, one group
# a line: the Postfix master of the setup, stunnel, HAProxy, the mailcloak
# instances (space-separated), PostgreSQL's postmaster and the Keycloak
# development directory. A group that does not run prints "-".
cpu_groups() {
    head -n 1 "$demo_dir/postfix-$1/spool/pid/master.pid" | tr -d ' '
    echo "${stunnel_pid:--}"
    echo "${haproxy_pid:--}"
    echo "${mailcloak_pids[*]:--}"
    head -n 1 "$demo_dir/pg/data/postmaster.pid"
    echo "$keycloak_pid"
}

# Prints the CPU clock ticks of each group of cpu_groups $1, space-separated.
cpu_snapshot() {
    local group ticks line=""
    while read -r group; do
        if [[ $group == - ]]; then
            ticks=0
        else
            # shellcheck disable=SC2086
            ticks=$(tree_cpu_ticks $group | awk '{ n += $1 } END { print n + 0 }')
        fi
        line+="$ticks "
    done < <(cpu_groups "$1")
    echo "$line"
}

# Prints the CPU time per message, in microseconds, of each group between
# the snapshots $1 and $2.
cpu_per_message() {
    awk -v before="$1" -v after="$2" -v hz="$(getconf CLK_TCK)" -v n="$messages" 'BEGIN {
        split(before, b, " "); split(after, a, " ")
        split("Postfix stunnel HAProxy mailcloak PostgreSQL Keycloak", names, " ")
        for (i = 1; i <= 6; i++) printf "%s%s %.0f", (i > 1 ? ", " : ""), names[i], (a[i] - b[i]) * 1000000 / hz / n
    }'
}

# Prints mailcloak's non-zero reply, identity provider and TLS handshake counters, summed
# over the instances, then the replies of each instance. $1 names the moment.
print_mailcloak_counters() {
    local i
    [[ " $setups " == *" mailcloak "* ]] || return 0
    echo "== mailcloak counters $1, summed over the instances"
    for ((i = 1; i <= instances; i++)); do
        curl -sf "http://127.0.0.1:$((metrics_base_port + i))/metrics" || die "no metrics from mailcloak instance $i"
    done | awk '/^mailcloak_(requests|identity_provider_calls|tls_handshakes|tls_sessions_resumed)_total\{/ {
            # Each instance names its listener after itself; sum over the instances.
            series = $1; gsub(/listener="[^"]*",?/, "", series); sub(/\{\}$/, "", series); sum[series] += $2 }
        END { for (series in sum) if (sum[series] > 0) printf "%s %d\n", series, sum[series] }' | sort
    for ((i = 1; i <= instances; i++)); do
        echo "instance $i: $(curl -sf "http://127.0.0.1:$((metrics_base_port + i))/metrics" |
            awk '/^mailcloak_requests_total\{/ { n += $2 } END { printf "%d", n }') replies"
    done
}

# Sends the messages to setup $1 and prints its rate; $2 names the run.
# Fails unless every message was accepted and discarded.
run_setup() {
    local setup=$1 name=$2 log=$demo_dir/postfix-$1/postfix.log
    local offset start end delivered rejected waited=0
    local cpu_before cpu_after
    offset=$(stat -c %s "$log")
    cpu_before=$(cpu_snapshot "$setup")

    start=$(date +%s.%N)
    if ! run_smtp_source -s "$sessions" -m "$messages" -N -M client.test -f "$sender" \
        -t "$recipient_local@$recipient_domain" "127.0.0.1:${smtp_port[$setup]}" >"$demo_dir/$name.out" 2>&1; then
        die "smtp-source failed against $setup ($name): $(tail -n 3 "$demo_dir/$name.out"); see $log"
    fi
    end=$(date +%s.%N)

    until delivered=$(tail -c +$((offset + 1)) "$log" | grep -c "status=sent ($discard_tag)") &&
        ((delivered >= messages)); do
        waited=$((waited + 1))
        ((waited <= delivery_timeout_seconds * 2)) ||
            die "$setup ($name): $delivered of $messages messages discarded after ${delivery_timeout_seconds}s; see $log"
        sleep 0.5
    done
    # Taken once every message is discarded, so that it includes delivery.
    cpu_after=$(cpu_snapshot "$setup")
    # cleanup warns when the queue file system's clock runs ahead of the
    # system clock (seen on virtual machines). Those warnings concern time
    # stamps, not mail, so they do not fail the run.
    rejected=$(tail -c +$((offset + 1)) "$log" | grep -E ': (reject|warning):' |
        grep -c -v -E 'warning: (file system clock is [0-9]+ seconds? ahead|resetting file time stamps)' || true)
    ((rejected == 0)) || die "$setup ($name): $rejected reject or warning lines in $log"

    awk -v n="$messages" -v s="$start" -v e="$end" 'BEGIN { printf "%.1f\n", n / (e - s) }' \
        >"$demo_dir/$name.rate"
    echo "$name: $messages messages in $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }') s," \
        "$(cat "$demo_dir/$name.rate") messages/s, $delivered discarded, 0 rejected"
    echo "$name: CPU µs a message: $(cpu_per_message "$cpu_before" "$cpu_after")" |
        tee "$demo_dir/$name.cpu"
}

# Prints the median of the numbers on standard input, one a line.
median() {
    sort -n | awk '{ value[NR] = $1 } END { if (NR % 2) print value[(NR + 1) / 2]; else printf "%.1f\n", (value[NR / 2] + value[NR / 2 + 1]) / 2 }'
}

# Prints the cost of $1 relative to $2 in percent: how much lower its rate is.
cost() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * (b - a) / b; else print "-" }'
}

start_data_services
if [[ " $setups " == *" mailcloak "* ]]; then
    start_mailcloak
    start_proxies
else
    # postfix.sh needs a policy endpoint even when no setup uses it.
    stunnel_port=$haproxy_port
fi
start_postfix
pin_processes

echo "machine: $(nproc) cores, $(uname -r), $(postconf -h mail_version | sed 's/^/Postfix /'), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load: smtp-source -s $sessions -m $messages -N, one recipient a message, new connection a message;" \
    "default_process_limit $process_limit; $instances mailcloak instance(s) with 1 reactor thread each"
if [[ -n $node_cpus ]]; then
    echo "placement: node (Postfix, stunnel) on CPU $node_cpus; cluster (HAProxy, mailcloak, PostgreSQL, Keycloak) and smtp-source on CPU $cluster_cpus"
fi
echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
for setup in $setups; do
    run_setup "$setup" "$setup-warmup"
    # Each instance has its own identity cache and HAProxy spreads the
    # connections, so one run leaves some users uncached on some instances.
    [[ $setup != mailcloak && $setup != nopolicy ]] || run_setup "$setup" "$setup-warmup-2"
done
print_mailcloak_counters "after the warm-up runs"
for ((round = 1; round <= rounds; round++)); do
    for setup in $setups; do
        run_setup "$setup" "$setup-$round"
    done
    echo "load average after round $round: $(cut -d' ' -f1-3 /proc/loadavg)"
done

print_mailcloak_counters "after all runs"
echo "== summary: messages/s accepted by smtpd, median of $rounds rounds"
declare -A median_rate
for setup in $setups; do
    rates=""
    for ((round = 1; round <= rounds; round++)); do
        rates="$rates $(cat "$demo_dir/$setup-$round.rate")"
    done
    median_rate[$setup]=$(printf '%s\n' $rates | median)
    printf '%-10s %10s   rounds:%s\n' "$setup" "${median_rate[$setup]}" "$rates"
done
echo "== CPU µs a message, median of $rounds rounds"
for setup in $setups; do
    line=""
    for component in Postfix stunnel HAProxy mailcloak PostgreSQL Keycloak; do
        value=$(for ((round = 1; round <= rounds; round++)); do
            grep -o -E "$component [0-9]+" "$demo_dir/$setup-$round.cpu" | cut -d' ' -f2
        done | median)
        line+=" $component $value"
    done
    printf '%-10s%s\n' "$setup" "$line"
done
if [[ -n ${median_rate[mailcloak]:-} && -n ${median_rate[static]:-} ]]; then
    echo "cost of mailcloak against static: $(cost "${median_rate[mailcloak]}" "${median_rate[static]}") (target: under 10%)"
fi
if [[ -n ${median_rate[mailcloak]:-} && -n ${median_rate[nopolicy]:-} ]]; then
    echo "cost of the policy service (mailcloak against nopolicy): $(cost "${median_rate[mailcloak]}" "${median_rate[nopolicy]}") (target: under 10%)"
fi
if [[ -n ${median_rate[mailcloak]:-} && -n ${median_rate[pgsql]:-} ]]; then
    echo "cost of mailcloak against pgsql: $(cost "${median_rate[mailcloak]}" "${median_rate[pgsql]}")"
fi
