#!/bin/sh
# Sets up and runs a local mailcloak demo on loopback: installs what is
# missing, builds in release mode, starts a throwaway PostgreSQL cluster and
# the Keycloak development directory, migrates and seeds demo data, and runs
# mailcloak in the foreground on 127.0.0.1:10027. Ctrl-C stops everything.
# Everything it creates lives under run/demo in the source tree.
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
[ -x /opt/swift/usr/bin/swift ] && PATH="/opt/swift/usr/bin:$PATH"
export PATH

port=${MAILCLOAK_DEMO_PORT:-10027}
pg_port=${MAILCLOAK_DEMO_PG_PORT:-15433}
kc_port=${MAILCLOAK_DEMO_KEYCLOAK_PORT:-18080}
demo=/tmp/mailcloak-demo

scripts/install-deps.sh
swift build -c release --product mailcloak
swift build -c release --product mailcloakctl
bin=$(swift build -c release --show-bin-path)

mkdir -p "$demo"
chmod 0755 "$demo"
keycloak_pid=""
cleanup() {
    [ -n "$keycloak_pid" ] && kill "$keycloak_pid" 2>/dev/null || true
    scripts/testenv/postgres.sh stop "$demo/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

database_url=$(scripts/testenv/postgres.sh start "$demo/pg" "$pg_port")
psql "$database_url" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'mailcloak'" | grep -q 1 \
    || psql "$database_url" -qc "CREATE DATABASE mailcloak"
database_url="postgresql://postgres@127.0.0.1:$pg_port/mailcloak"

python3 dev/keycloak-dev/keycloak_dev.py --port "$kc_port" --data dev/keycloak-dev/demo-realm.json \
    >"$demo/keycloak-dev.log" 2>&1 &
keycloak_pid=$!

export MAILCLOAK_DATABASE_URL="$database_url"
ctl="$bin/mailcloakctl"
"$ctl" migrate
"$ctl" domains add example.com 2>/dev/null || true
"$ctl" aliases add sales@example.com alice 2>/dev/null || true
"$ctl" aliases add support@example.com bob 2>/dev/null || true
if ! "$ctl" apps list | grep -q '^crm'; then
    printf 'demo-app-secret\n' | "$ctl" apps add crm --secret-stdin
    "$ctl" apps allow crm noreply@example.com
fi

cat >"$demo/mailcloak.yaml" <<YAML
listeners:
  - name: demo
    address: "tcp:127.0.0.1:$port"
database:
  url: "$database_url"
identity:
  provider: keycloak
  keycloak:
    base_url: "http://127.0.0.1:$kc_port"
    realm: mail
    client_id: mailcloak
    client_secret: demo-secret
log:
  level: info
YAML

"$bin/mailcloak" check --config "$demo/mailcloak.yaml" || true

cat <<TEXT

mailcloak demo is starting on 127.0.0.1:$port. Try, from another shell:
  postmap -q sales@example.com socketmap:inet:127.0.0.1:$port:alias     # alice@example.com
  postmap -q example.com socketmap:inet:127.0.0.1:$port:domain          # example.com
  postmap -q alice@example.com socketmap:inet:127.0.0.1:$port:mailbox   # alice@example.com
  printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nsender=x@remote.test\nrecipient=nobody@example.com\n\n' \\
      | nc -q1 127.0.0.1 $port                                         # action=550 5.1.1 No such user
  MAILCLOAK_DATABASE_URL=$database_url $ctl aliases add info@example.com alice
Stop with Ctrl-C.

TEXT
"$bin/mailcloak" serve --config "$demo/mailcloak.yaml"
