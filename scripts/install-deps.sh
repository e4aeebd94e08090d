#!/bin/sh
# Installs the Debian 12 packages that building, testing and the demo need.
# Idempotent: when every package is already installed it changes nothing and
# does not touch the network. Run as root. The Swift toolchain is not a Debian
# package; it must already be on PATH or in /opt/swift/usr/bin.
set -eu

# prometheus is here only for promtool, which the tests use to check the
# /metrics output and the alert rules. It is large (about 100 MB installed),
# and on a host with systemd Debian also starts its prometheus service on port
# 9090: run `systemctl disable --now prometheus` where that is not wanted.
# haproxy is here for `haproxy -c`, which checks deploy/haproxy/haproxy.cfg;
# on a host with systemd Debian starts its service too, but Debian's own
# /etc/haproxy/haproxy.cfg has no frontend, so it listens on no port.
# postfix-pgsql adds Postfix's pgsql: table type.
PACKAGES="pkg-config curl procps libssl-dev openssl stunnel4 libpq-dev libcurl4-openssl-dev libyaml-dev libargon2-dev libsqlite3-dev sqlite3
libhiredis-dev redis-server postgresql-15 postgresql-client-15 postfix postfix-pgsql swaks python3 dovecot-core dovecot-pgsql prometheus
haproxy"

missing=""
for package in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done

if [ -n "$missing" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "install-deps.sh: run as root to install:$missing" >&2; exit 1; }
    echo "install-deps.sh: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! command -v swift >/dev/null 2>&1 && [ ! -x /opt/swift/usr/bin/swift ]; then
    echo "install-deps.sh: no Swift toolchain on PATH or in /opt/swift/usr/bin" >&2
    exit 1
fi
