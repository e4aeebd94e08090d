# Shell functions shared by the bench*.sh scripts: the release build, the
# scratch folder, the throwaway PostgreSQL and Keycloak development directory
# with the demo data (from demo-env.sh), waiting for a port, and cleanup.
# Source it from the repository root. It puts /opt/swift/usr/bin on PATH when
# that toolchain exists and sources scripts/lib/demo-env.sh.

[ -x /opt/swift/usr/bin/swift ] && PATH="/opt/swift/usr/bin:$PATH"
export PATH
. scripts/lib/demo-env.sh

# The script's name for error messages, for example "bench-idle.sh".
bench_name=$(basename "$0")

# Installs missing system packages and builds the given products in release
# mode, with SwiftPM scratch path $1 (empty for the default .build). Sets bin
# to the folder of the built binaries. On a build error it prints the error
# lines and exits with status 1.
bench_build_release() {
    scratch_option=""
    [ -n "$1" ] && scratch_option="--scratch-path $1"
    shift
    scripts/install-deps.sh
    for product in "$@"; do
        # shellcheck disable=SC2086 # $scratch_option is an option and its value
        if ! output=$(swift build -c release $scratch_option --product "$product" 2>&1); then
            printf '%s\n' "$output" | grep -E 'error' | head -20 >&2
            echo "$bench_name: building $product failed" >&2
            exit 1
        fi
    done
    # shellcheck disable=SC2086
    bin=$(swift build -c release $scratch_option --show-bin-path)
}

# Creates a new folder /tmp/$1.XXXXXX that the other users may read (the
# PostgreSQL server runs as its own user) and sets demo_dir to it.
bench_make_dir() {
    demo_dir=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 0755 "$demo_dir"
}

# Starts PostgreSQL on 127.0.0.1:$1 and the Keycloak development directory on
# 127.0.0.1:$2, then migrates and seeds the demo data with $bin/mailcloakctl.
bench_start_directory() {
    demo_start_postgres "$1"
    demo_start_keycloak "$2"
    demo_seed "$bin/mailcloakctl" >/dev/null
}

# Sends SIGTERM to each process id given (empty arguments are skipped), stops
# the Keycloak development directory and PostgreSQL, and removes demo_dir.
# For the EXIT trap, so every step goes on after a failure.
bench_cleanup() {
    for pid in "$@"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    demo_stop_keycloak
    demo_stop_postgres
    rm -rf "$demo_dir"
}

# Waits until 127.0.0.1:$1 accepts a TCP connection and exits with status 1
# after 100 failed tries 0.1 s apart. Each try times out after 1 s, so a port
# that refuses connections fails after about 10 s.
bench_wait_port() {
    tries=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -le 100 ] || { echo "$bench_name: nothing listens on port $1" >&2; exit 1; }
        sleep 0.1
    done
}

# Prints the VmRSS of process $1 in KiB.
bench_rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# Prints the machine line that starts every result: cores, kernel, the OpenSSL
# version when $1 is "openssl", and the UTC time.
bench_print_machine() {
    openssl_part=""
    [ "${1:-}" = openssl ] && openssl_part=", $(openssl version | cut -d' ' -f1-2)"
    echo "machine: $(nproc) cores, $(uname -r)$openssl_part, $(date -u +%Y-%m-%dT%H:%MZ)"
}
