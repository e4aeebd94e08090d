#!/bin/sh
# Runs the whole test suite: installs what is missing, builds, starts a
# throwaway PostgreSQL cluster on 127.0.0.1:$MAILCLOAK_TEST_PG_PORT (default
# 15432), runs every test target, and stops the cluster again. The tests
# themselves start the Keycloak development directory, mailcloak and Postfix.
# Extra arguments go to `swift test` (for example `--filter ResolverTests`).
set -eu

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

swift build --build-tests
MAILCLOAK_TEST_DATABASE_URL=$(scripts/testenv/postgres.sh start "$work/pg" "$pg_port")
export MAILCLOAK_TEST_DATABASE_URL
export MAILCLOAK_TEST_WORKDIR="$work"
export MAILCLOAK_SOURCE_ROOT="$root"

swift test --skip-build "$@"
