#!/bin/sh
# Runs the whole test suite: installs what is missing, builds, starts a
# throwaway PostgreSQL cluster on 127.0.0.1:$MAILCLOAK_TEST_PG_PORT (default
# 15432), runs every test target, and stops the cluster again. The tests
# themselves start the Keycloak development directory, mailcloak and Postfix.
# Extra arguments go to `swift test` (for example `--filter ResolverTests`).
#
# `scripts/test.sh --sanitize=thread [ARGS]` builds into .build/tsan with the
# thread sanitizer and runs the same tests there. The daemons that the
# end-to-end tests start come from that build too. TSAN_OPTIONS defaults to
# halt_on_error=1, so the first race report fails the run.
set -eu

sanitize=""
if [ "${1:-}" = "--sanitize=thread" ]; then
    sanitize="--sanitize=thread --scratch-path .build/tsan"
    shift
    TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1}
    export TSAN_OPTIONS
fi

cd "$(dirname "$0")/.."
root=$(pwd)
[ -x /opt/swift/usr/bin/swift ] && PATH="/opt/swift/usr/bin:$PATH"
export PATH

scripts/install-deps.sh

work=$(mktemp -d /tmp/mailcloak-test.XXXXXX)
chmod 0755 "$work"
export TMPDIR="$work/tmp"
mkdir -p "$TMPDIR"
pg_port=${MAILCLOAK_TEST_PG_PORT:-15432}

cleanup() {
    status=$?
    scripts/testenv/postgres.sh stop "$work/pg" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT INT TERM

# shellcheck disable=SC2086 # $sanitize is a list of options
swift build --build-tests $sanitize
MAILCLOAK_TEST_DATABASE_URL=$(scripts/testenv/postgres.sh start "$work/pg" "$pg_port")
export MAILCLOAK_TEST_DATABASE_URL
export MAILCLOAK_TEST_WORKDIR="$work"
export MAILCLOAK_SOURCE_ROOT="$root"

# shellcheck disable=SC2086
swift test --skip-build $sanitize "$@"
