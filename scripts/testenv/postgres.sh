#!/bin/sh
# Starts and stops a throwaway PostgreSQL cluster for tests.
#
#   postgres.sh start DIR PORT   create (first time) and start a cluster in DIR,
#                                listening on 127.0.0.1:PORT and on a UNIX socket
#                                in DIR; prints its superuser URL on stdout
#   postgres.sh stop DIR         stop that cluster (fast shutdown)
#
# The cluster trusts every local connection: it is for tests only. PostgreSQL
# refuses to run as root, so when run as root the script creates the system
# user mailcloak-test (if missing) and runs the server as that user.
# Binaries come from Debian's postgresql-15 (PG_BIN overrides the folder).
set -eu

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
TEST_USER=mailcloak-test
READY_TIMEOUT=30

usage() {
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
}

fail() {
    echo "postgres.sh: $*" >&2
    exit 1
}

# Runs a command as the cluster owner: mailcloak-test under root, else the caller.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$TEST_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    if ! id -u "$TEST_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$TEST_USER" || fail "could not create user $TEST_USER"
    fi
}

# Rejects a DIR the cluster owner cannot reach, before initdb fails obscurely.
check_dir() {
    dir=$1
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown "$TEST_USER" "$dir"
        chmod 0700 "$dir"
        runuser -u "$TEST_USER" -- test -w "$dir" \
            || fail "user $TEST_USER cannot write $dir; choose a DIR whose parent folders others may enter (for example under /tmp)"
    fi
    # A UNIX socket path is limited to 107 bytes: DIR/.s.PGSQL.PORT must fit.
    socket_path="$dir/.s.PGSQL.65535"
    [ "${#socket_path}" -le 107 ] || fail "DIR path too long for a UNIX socket (max 92 bytes): $dir"
}

init_cluster() {
    dir=$1
    port=$2
    data="$dir/data"
    [ -f "$data/PG_VERSION" ] && return 0
    as_owner "$PG_BIN/initdb" --pgdata="$data" --username=postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || fail "initdb failed; see $dir/initdb.log"
    # Settings for a disposable test cluster: loopback only, no durability.
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
EOF
    cat >"$data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
}

start() {
    [ $# -eq 2 ] || usage
    dir=$(realpath -m "$1")
    port=$2
    case $port in
        '' | *[!0-9]*) fail "invalid PORT: $port" ;;
    esac
    [ "$port" -ge 1024 ] && [ "$port" -le 65535 ] || fail "PORT out of range 1024-65535: $port"
    [ -x "$PG_BIN/pg_ctl" ] || fail "$PG_BIN/pg_ctl not found; install Debian's postgresql-15"

    ensure_user
    check_dir "$dir"
    init_cluster "$dir" "$port"

    if as_owner "$PG_BIN/pg_ctl" status --pgdata="$dir/data" >/dev/null 2>&1; then
        echo "postgres.sh: cluster in $dir is already running" >&2
    else
        as_owner "$PG_BIN/pg_ctl" start --pgdata="$dir/data" --log="$dir/postgres.log" \
            --options="-p $port" --wait --timeout="$READY_TIMEOUT" >/dev/null \
            || fail "pg_ctl start failed; see $dir/postgres.log"
    fi

    waited=0
    until "$PG_BIN/pg_isready" --host=127.0.0.1 --port="$port" --quiet; do
        waited=$((waited + 1))
        [ "$waited" -le "$READY_TIMEOUT" ] || fail "not ready after ${READY_TIMEOUT}s; see $dir/postgres.log"
        sleep 1
    done
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
}

stop() {
    [ $# -eq 1 ] || usage
    dir=$(realpath -m "$1")
    [ -f "$dir/data/PG_VERSION" ] || fail "no cluster in $dir"
    if ! as_owner "$PG_BIN/pg_ctl" status --pgdata="$dir/data" >/dev/null 2>&1; then
        echo "postgres.sh: cluster in $dir is not running" >&2
        return 0
    fi
    as_owner "$PG_BIN/pg_ctl" stop --pgdata="$dir/data" --mode=fast --wait >/dev/null \
        || fail "pg_ctl stop failed; see $dir/postgres.log"
}

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
    start) start "$@" ;;
    stop) stop "$@" ;;
    *) usage ;;
esac
